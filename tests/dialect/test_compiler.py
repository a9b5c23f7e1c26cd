"""SQL text the compilers produce for each server, without a server.

The CockroachDB dialect below carries the detection result of a real v25.2.1
``version()`` string (tests/crdb_facts/version.json); nothing is executed, so these
tests check text only. Behaviour against a live server is in
tests/integration/test_ddl.py and test_sql_constructs.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.functions import _registry

from sqlalchemy_crdb_async import (
    as_of_system_time,
    follower_read_timestamp,
    index_hint,
    timestampdiff,
    unique_rowid,
    upsert,
    uuid_primary_key,
    with_max_staleness,
)
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.server import parse_server_version

V25 = (
    "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, built 2025/06/02 23:17:23, "
    "go1.23.7 X:nocoverageredesign)"
)


@pytest.fixture
def crdb() -> CockroachDBDialect_asyncpg:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(V25, "13.0.0")
    return dialect


@pytest.fixture
def postgres() -> CockroachDBDialect_asyncpg:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(
        "PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu", "15.18"
    )
    return dialect


def sql(element: Any, dialect: Any) -> str:
    return " ".join(str(element.compile(dialect=dialect)).split())


def make_table() -> sa.Table:
    meta = sa.MetaData()
    return sa.Table(
        "t",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Integer),
        sa.Column("b", sa.String(10)),
        sa.Column("j", sa.JSON),
        sa.Index("ix_store", "a", cockroachdb_storing=["b"]),
        sa.Index("ix_part", "a", cockroachdb_where=sa.text("a > 0")),
        sa.Index("ix_inv", "j", cockroachdb_inverted=True),
    )


# -- types and quoting ---------------------------------------------------------------


def test_integer_is_int4_on_crdb_and_integer_on_postgres(
    crdb: Any, postgres: Any
) -> None:
    assert sql(sa.Integer(), crdb) == "INT4"
    assert sql(sa.Integer(), postgres) == "INTEGER"
    assert sql(sa.BigInteger(), crdb) == "BIGINT"


def test_json_is_jsonb_on_crdb(crdb: Any, postgres: Any) -> None:
    assert sql(sa.JSON(), crdb) == "JSONB"
    assert sql(sa.JSON(), postgres) == "JSON"


@pytest.mark.parametrize(
    "word",
    [
        "index",
        "family",
        "nothing",
        "virtual",
        "work",
        "role",
        "view",
        "lateral",
        "tablesample",
        "string",
        "box2d",
    ],
)
def test_crdb_reserved_words_are_quoted(crdb: Any, word: str) -> None:
    table = sa.table(word, sa.column(word))
    assert (
        sql(sa.select(table.c[word]), crdb) == f'SELECT "{word}"."{word}" FROM "{word}"'
    )


@pytest.mark.parametrize("word", ["lateral", "tablesample", "freeze", "verbose"])
def test_postgres_reserved_words_are_quoted(postgres: Any, word: str) -> None:
    table = sa.table("t", sa.column(word))
    assert sql(sa.select(table.c[word]), postgres) == f'SELECT t."{word}" FROM t'


# -- DDL -------------------------------------------------------------------------------


def test_create_table_inlines_indexes_on_crdb(crdb: Any) -> None:
    text = sql(CreateTable(make_table()), crdb)
    assert "INVERTED INDEX ix_inv (j)" in text
    assert "INDEX ix_part (a) WHERE a > 0" in text
    assert "INDEX ix_store (a) STORING (b)" in text
    assert text.endswith(")")


def test_inlined_index_create_is_a_no_op_on_crdb(crdb: Any) -> None:
    table = make_table()
    sql(CreateTable(table), crdb)
    for index in table.indexes:
        assert "IF NOT EXISTS" in sql(CreateIndex(index), crdb)


def test_create_table_does_not_inline_on_postgres(postgres: Any) -> None:
    assert "INDEX" not in sql(CreateTable(make_table()), postgres)


def test_index_options_on_postgres_use_its_spelling(postgres: Any) -> None:
    indexes = {i.name: i for i in make_table().indexes}
    assert sql(CreateIndex(indexes["ix_store"]), postgres) == (
        "CREATE INDEX ix_store ON t (a) INCLUDE (b)"
    )
    assert sql(CreateIndex(indexes["ix_part"]), postgres) == (
        "CREATE INDEX ix_part ON t (a) WHERE a > 0"
    )
    assert sql(CreateIndex(indexes["ix_inv"]), postgres) == (
        "CREATE INDEX ix_inv ON t USING gin (j)"
    )


def test_hash_sharded_index(crdb: Any, postgres: Any) -> None:
    table = make_table()
    index = sa.Index("ix_hash", table.c.a, cockroachdb_hash_sharded=True)
    sharded = sa.Index("ix_h8", table.c.b, cockroachdb_bucket_count=8)
    assert sql(CreateIndex(index), crdb) == "CREATE INDEX ix_hash ON t (a) USING HASH"
    assert sql(CreateIndex(sharded), crdb) == (
        "CREATE INDEX ix_h8 ON t (b) USING HASH WITH (bucket_count=8)"
    )
    with pytest.raises(
        sa.exc.CompileError, match="cockroachdb_hash_sharded is CockroachDB-only"
    ):
        sql(CreateIndex(index), postgres)


def test_postgresql_kwargs_work_on_crdb_too(crdb: Any) -> None:
    table = make_table()
    index = sa.Index(
        "ix_pg", table.c.a, postgresql_include=["b"], postgresql_where=table.c.a > 1
    )
    assert sql(CreateIndex(index), crdb) == (
        "CREATE INDEX ix_pg ON t (a) STORING (b) WHERE a > 1"
    )


def test_computed_identity_and_defaults(crdb: Any) -> None:
    meta = sa.MetaData()
    table = sa.Table(
        "c",
        meta,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("a", sa.Integer),
        sa.Column("s", sa.Integer, sa.Computed("a * 2", persisted=True)),
        sa.Column("v", sa.Integer, sa.Computed("a * 3", persisted=False)),
        sa.Column("r", sa.BigInteger, server_default=unique_rowid()),
    )
    text = sql(CreateTable(table), crdb)
    assert "id BIGINT GENERATED ALWAYS AS IDENTITY" in text
    assert "s INT4 AS (a * 2) STORED" in text
    assert "v INT4 AS (a * 3) VIRTUAL" in text
    assert "r BIGINT DEFAULT unique_rowid()" in text


def test_unique_rowid_is_crdb_only(postgres: Any) -> None:
    with pytest.raises(
        sa.exc.CompileError, match="unique_rowid\\(\\) is CockroachDB-only"
    ):
        sql(sa.select(unique_rowid()), postgres)


def test_uuid_primary_key(crdb: Any) -> None:
    table = sa.Table("u", sa.MetaData(), uuid_primary_key(), sa.Column("x", sa.Integer))
    assert "id UUID DEFAULT gen_random_uuid() NOT NULL" in sql(CreateTable(table), crdb)


# -- statements ----------------------------------------------------------------------


def test_upsert(crdb: Any, postgres: Any) -> None:
    table = make_table()
    stmt = upsert(table).values(id=1, a=2)
    assert sql(stmt, crdb) == "UPSERT INTO t (id, a) VALUES ($1::INT4, $2::INT4)"
    assert sql(stmt, postgres) == (
        "INSERT INTO t (id, a) VALUES ($1::INTEGER, $2::INTEGER) "
        "ON CONFLICT (id) DO UPDATE SET a = excluded.a"
    )


def test_upsert_of_key_only_does_nothing_on_conflict(postgres: Any) -> None:
    stmt = upsert(make_table()).values(id=1)
    assert sql(stmt, postgres).endswith("ON CONFLICT (id) DO NOTHING")


def test_upsert_needs_a_primary_key(crdb: Any) -> None:
    keyless = sa.Table("k", sa.MetaData(), sa.Column("a", sa.Integer))
    with pytest.raises(sa.exc.CompileError, match="has no primary key"):
        sql(upsert(keyless).values(a=1), crdb)


@pytest.mark.parametrize(
    ("value", "clause"),
    [
        ("-4h", "AS OF SYSTEM TIME '-4h'"),
        (dt.timedelta(seconds=-10), "AS OF SYSTEM TIME '-10s'"),
        # exact seconds, never an exponent (':g' wrote '-1.0368e+06s')
        (dt.timedelta(days=-12), "AS OF SYSTEM TIME '-1036800s'"),
        (dt.timedelta(microseconds=-1), "AS OF SYSTEM TIME '-0.000001s'"),
        (
            dt.timedelta(days=-12, microseconds=-5),
            "AS OF SYSTEM TIME '-1036800.000005s'",
        ),
        (dt.datetime(2016, 1, 1, 8), "AS OF SYSTEM TIME '2016-01-01 08:00:00'"),
        (1451635200000000000, "AS OF SYSTEM TIME 1451635200000000000"),
        (follower_read_timestamp(), "AS OF SYSTEM TIME follower_read_timestamp()"),
        (
            with_max_staleness("10s"),
            "AS OF SYSTEM TIME with_max_staleness('10s'::INTERVAL)",
        ),
        (
            with_max_staleness(dt.timedelta(days=30)),
            "AS OF SYSTEM TIME with_max_staleness('2592000s'::INTERVAL)",
        ),
        (
            with_max_staleness(dt.timedelta(seconds=5), nearest_only=True),
            "AS OF SYSTEM TIME with_max_staleness('5s'::INTERVAL, true)",
        ),
    ],
)
def test_as_of_system_time_ends_the_from_list(
    crdb: Any, value: Any, clause: str
) -> None:
    table = make_table()
    other = sa.table("u", sa.column("id"))
    stmt = as_of_system_time(
        sa.select(table.c.id)
        .join(other, other.c.id == table.c.id)
        .where(table.c.a > 1),
        value,
    )
    assert sql(stmt, crdb) == (
        f"SELECT t.id FROM t JOIN u ON t.id = u.id {clause} WHERE t.a > $1::INT4"
    )


def test_as_of_system_time_is_crdb_only(postgres: Any) -> None:
    stmt = as_of_system_time(sa.select(make_table()), "-1s")
    with pytest.raises(sa.exc.CompileError, match="CockroachDB-only"):
        sql(stmt, postgres)


def test_as_of_system_time_refuses_locking_reads(crdb: Any) -> None:
    stmt = as_of_system_time(sa.select(make_table()), "-1s").with_for_update()
    with pytest.raises(sa.exc.CompileError, match="FOR UPDATE"):
        sql(stmt, crdb)


@pytest.mark.parametrize(
    "bad", [dt.timedelta(seconds=1), "", True, 1.5, None, object()]
)
def test_as_of_system_time_bad_values(bad: Any) -> None:
    with pytest.raises(sa.exc.ArgumentError):
        as_of_system_time(sa.select(make_table()), bad)


def test_index_hints(crdb: Any, postgres: Any) -> None:
    table = make_table()
    assert sql(
        sa.select(table.c.id).with_hint(table, *index_hint("ix_store")), crdb
    ) == ("SELECT t.id FROM t@ix_store")
    forced = sa.select(table.c.id).with_hint(table, *index_hint("ix_store", force=True))
    assert sql(forced, crdb) == "SELECT t.id FROM t@{FORCE_INDEX=ix_store}"
    desc = sa.select(table.c.id).with_hint(
        table, *index_hint("Mixed", direction="desc")
    )
    assert sql(desc, crdb) == 'SELECT t.id FROM t@{FORCE_INDEX="Mixed",DESC}'
    alias = table.alias("x")
    aliased = sa.select(alias.c.id).with_hint(alias, *index_hint("ix_store"))
    assert sql(aliased, crdb) == "SELECT x.id FROM t@ix_store AS x"
    with pytest.raises(sa.exc.CompileError, match="CockroachDB-only"):
        sql(sa.select(table.c.id).with_hint(table, *index_hint("ix_store")), postgres)


def test_index_hint_bad_input() -> None:
    with pytest.raises(sa.exc.ArgumentError, match="ASC' or 'DESC"):
        index_hint("i", direction="up")
    with pytest.raises(sa.exc.ArgumentError, match="needs an index name"):
        index_hint("")


def test_timestampdiff_text(crdb: Any) -> None:
    table = sa.table("e", sa.column("s", sa.DateTime), sa.column("f", sa.DateTime))
    text = sql(sa.select(timestampdiff("hour", table.c.s, table.c.f)), crdb)
    # integer microseconds, truncated toward zero by div(); no FLOAT division
    assert text.startswith("SELECT CAST(div((CAST(CAST(extract(epoch FROM ")
    assert text.endswith(", 3600000000) AS BIGINT) AS timestampdiff_1 FROM e")
    assert " / " not in text
    with pytest.raises(sa.exc.ArgumentError, match="unit must be one of"):
        timestampdiff("fortnight", table.c.s, table.c.f)


@pytest.mark.parametrize("unit", ["MONTH", "quarter", " Year "])
def test_timestampdiff_refuses_calendar_units(crdb: Any, unit: str) -> None:
    table = sa.table("e", sa.column("s", sa.DateTime), sa.column("f", sa.DateTime))
    with pytest.raises(sa.exc.ArgumentError, match="calendar units"):
        timestampdiff(unit, table.c.s, table.c.f)
    generic = sa.select(sa.func.timestampdiff(sa.text(unit), table.c.s, table.c.f))
    with pytest.raises(sa.exc.CompileError, match="calendar units"):
        sql(generic, crdb)


def test_func_timestampdiff_is_ours_and_other_dialects_keep_it(crdb: Any) -> None:
    from sqlalchemy.dialects import mysql

    table = sa.table("e", sa.column("s", sa.DateTime), sa.column("f", sa.DateTime))
    expr = sa.func.timestampdiff(sa.text("MINUTE"), table.c.s, table.c.f)
    assert "60000000" in sql(sa.select(expr), crdb)
    assert sql(sa.select(expr), mysql.dialect()) == (
        "SELECT timestampdiff(MINUTE, e.s, e.f) AS timestampdiff_1 FROM e"
    )
    with pytest.raises(sa.exc.CompileError, match="unit must be one of"):
        sql(sa.select(sa.func.timestampdiff(sa.null(), table.c.s, table.c.f)), crdb)
    with pytest.raises(sa.exc.CompileError, match="takes 3 arguments"):
        sql(sa.select(sa.func.timestampdiff(sa.text("DAY"), table.c.s)), crdb)


def test_stock_postgresql_compiles_timestampdiff_as_a_plain_function() -> None:
    # importing this package must not change another dialect's SQL
    from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    table = sa.table("e", sa.column("s", sa.DateTime), sa.column("f", sa.DateTime))
    plain = "SELECT timestampdiff(MINUTE, e.s, e.f) AS timestampdiff_1 FROM e"
    for dialect in (
        pg.dialect(),
        pg_asyncpg.dialect(),
        pg_psycopg.dialect(),
    ):
        generic = sa.func.timestampdiff(sa.text("MINUTE"), table.c.s, table.c.f)
        assert sql(sa.select(generic), dialect) == plain
        ours = timestampdiff("MINUTE", table.c.s, table.c.f)
        assert "div(" not in sql(sa.select(ours), dialect)
    # not SQLAlchemy's process-wide func.timestampdiff
    assert _registry["_default"].get("timestampdiff") is not timestampdiff


def test_timestampdiff_unit_in_a_bind_is_part_of_the_cache_key() -> None:
    table = sa.table("e", sa.column("s", sa.DateTime), sa.column("f", sa.DateTime))

    def key(unit: str) -> Any:
        expr = timestampdiff(sa.literal(unit), table.c.s, table.c.f)
        return sa.select(expr)._generate_cache_key()

    assert key("SECOND") != key("HOUR")
    assert key("SECOND") == key("second")


def test_func_timestampdiff_bound_unit_is_chosen_by_value(crdb: Any) -> None:
    # a plain func.timestampdiff keys its cache without the bound unit's
    # value: the SQL picks the unit by value, so a cached compilation is right
    table = sa.table("e", sa.column("s", sa.DateTime), sa.column("f", sa.DateTime))
    expr = sa.func.timestampdiff(sa.literal("SECOND"), table.c.s, table.c.f)
    text = sql(sa.select(expr), crdb)
    assert "CASE lower(btrim(CAST(" in text
    assert "WHEN 'second' THEN 1000000 WHEN 'minute' THEN 60000000" in text
    bad = sa.func.timestampdiff(sa.literal("MONTH"), table.c.s, table.c.f)
    with pytest.raises(sa.exc.CompileError, match="calendar units"):
        sql(sa.select(bad), crdb)


def test_jsonb_array_types(crdb: Any) -> None:
    assert sql(pg.ARRAY(sa.Integer()), crdb) == "INT4[]"


def test_with_hint_bare_index_name_as_the_older_package(
    crdb: Any, postgres: Any
) -> None:
    meta = sa.MetaData()
    t = sa.Table(
        "t",
        meta,
        sa.Column("id", sa.Integer),
        sa.Column("txt", sa.String(50)),
        sa.Index("ix_t_txt", "txt"),
    )
    assert sql(sa.select(t).with_hint(t, "ix_t_txt"), crdb) == (
        "SELECT t.id, t.txt FROM t@ix_t_txt"
    )
    forced = sa.select(t.c.id).with_hint(t, "{FORCE_INDEX=ix_t_txt}")
    assert sql(forced.where(t.c.id < 3), crdb) == (
        "SELECT t.id FROM t@{FORCE_INDEX=ix_t_txt} WHERE t.id < $1::INT4"
    )
    with pytest.raises(sa.exc.CompileError, match=r"index_hint\('ix_t_txt'\)"):
        sql(sa.select(t).with_hint(t, "ix_t_txt"), postgres)
