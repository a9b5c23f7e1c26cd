"""Every statement the dialect sends on CockroachDB passes the conformance layer.

The dialect is in CockroachDB mode, once per release of the support window
(tests/conformance/_releases.py: server detection ran on that release's
``SELECT version()`` and ``server_version``; at v26.3 that is 18.0.0, so
SQLAlchemy's PostgreSQL-18 catalogue queries are the ones captured and checked
against v26.3's catalogue), and each statement is checked against that
release's builtins and catalogue columns; reflection runs
the installed SQLAlchemy's real code (2.0 or 2.1: CI runs this file on both)
with a :class:`~tests.conformance.recording.Recorder` in place of the
connection; DDL and Alembic's statements are compiled by the dialect.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.dialects.postgresql.named_types import CreateEnumType, DropEnumType
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope
from sqlalchemy.schema import CreateIndex, CreateTable

import sqlalchemy_crdb_async
from sqlalchemy_crdb_async.dialect.base import _CRDB_INDEX_ARGS, DETECT_SERVER_SQL
from tests.conformance._releases import RELEASES
from tests.conformance.checker import WINDOW, assert_conforms, problems
from tests.conformance.recording import (
    Recorder,
    crdb_dialect,
    package_sql_literals,
    release_dialect,
)

PACKAGE = Path(sqlalchemy_crdb_async.__file__).parent

#: Recorded CockroachDB answer: one table, t1 with descriptor id 55
#: (tests/crdb_facts/indexes.json pg_index v21_2 rows: indrelid 55 is t1), so
#: the per-table queries run too.
TABLE_OIDS = [{"oid": 55, "relname": "t1"}]


def _answer_table_oids(sql: str) -> list[dict[str, Any]] | None:
    if sql.startswith("SELECT pg_catalog.pg_class.oid, pg_catalog.pg_class.relname \n"):
        return TABLE_OIDS
    return None


MULTI = [
    "get_multi_columns",
    "get_multi_indexes",
    "get_multi_pk_constraint",
    "get_multi_foreign_keys",
    "get_multi_unique_constraints",
    "get_multi_check_constraints",
    "get_multi_table_options",
    "get_multi_table_comment",
]


#: Every release of the support window (tests/crdb_facts/versions.md).
by_release = pytest.mark.parametrize("release", WINDOW)


@by_release
@pytest.mark.parametrize("method", MULTI)
@pytest.mark.parametrize("filtered", [False, True], ids=["all", "filtered"])
def test_reflection_queries_conform(method: str, filtered: bool, release: str) -> None:
    dialect = release_dialect(release)
    recorder = Recorder(dialect, _answer_table_oids)
    list(
        getattr(dialect, method)(
            recorder,
            schema=None,
            filter_names=["t1"] if filtered else None,
            scope=ObjectScope.DEFAULT,
            kind=ObjectKind.ANY,
            info_cache={},
        )
    )
    assert recorder.statements, f"{method} sent nothing"
    for sql in recorder.statements:
        assert_conforms(sql, release=release)


SINGLE = [
    ("has_table", ("t1",)),
    ("has_sequence", ("s",)),
    ("has_schema", ("public",)),
    ("has_type", ("greeting",)),
    ("get_schema_names", ()),
    ("get_table_names", ()),
    ("get_view_names", ()),
    ("get_materialized_view_names", ()),
    ("get_sequence_names", ()),
    ("get_temp_table_names", ()),
    ("get_view_definition", ("v",)),
    ("_load_enums", ()),
    ("_load_domains", ()),
]


@by_release
@pytest.mark.parametrize(("method", "args"), SINGLE, ids=[m for m, _ in SINGLE])
def test_name_and_type_queries_conform(
    method: str, args: tuple[Any, ...], release: str
) -> None:
    dialect = release_dialect(release)
    recorder = Recorder(dialect)
    # get_view_definition raises for the view the empty answer lacks
    with contextlib.suppress(sa.exc.NoSuchTableError):
        getattr(dialect, method)(recorder, *args, info_cache={})
    assert recorder.statements, f"{method} sent nothing"
    for sql in recorder.statements:
        assert_conforms(sql, release=release)


@by_release
def test_server_detection_conforms(release: str) -> None:
    dialect = release_dialect(release)
    assert dialect.crdb_version[:2] == RELEASES[release].version
    # v26.3 reports PostgreSQL 18 (tests/crdb_facts/catalog_v26.md section 1)
    pg = 18 if RELEASES[release].version >= (26, 3) else 13
    assert dialect.server_version_info[0] == pg
    assert_conforms(DETECT_SERVER_SQL, release=release)


@by_release
def test_connect_time_statements_conform(release: str) -> None:
    """What SQLAlchemy's PostgreSQL dialect sends on first connect."""
    dialect = release_dialect(release)
    recorder = Recorder(dialect, lambda sql: [{"v": "on"}])
    dialect._get_default_schema_name(recorder)
    dialect._set_backslash_escapes(recorder)
    for sql in [*recorder.statements, "show transaction isolation level"]:
        assert_conforms(sql, release=release)


#: Statements the package sends to PostgreSQL only, which CockroachDB may
#: lack, each with the reason: none so far (the PostgreSQL reset's statements
#: all exist on CockroachDB too).
POSTGRESQL_ONLY: dict[str, str] = {}


@by_release
def test_every_sql_literal_in_the_package_conforms(release: str) -> None:
    """Pool reset and ping, retry/replay protocol, Alembic's probes, provision."""
    literals = package_sql_literals(PACKAGE)
    # the scan must find the statements the brief of this layer names
    for expected in (
        DETECT_SERVER_SQL,
        "SELECT 1",
        "RESET ALL",
        "SAVEPOINT cockroach_restart",
        "ROLLBACK TO SAVEPOINT cockroach_restart",
        "RELEASE SAVEPOINT cockroach_restart",
        "SET inject_retry_errors_enabled = true",
        "SET inject_retry_errors_enabled = false",
        "SELECT current_setting('autocommit_before_ddl', true)",
    ):
        assert expected in literals, f"{expected!r} not found by the scan"
    bad = {
        f"{where}: {sql}": problems(sql, release=release)
        for sql, where in literals.items()
        if sql not in POSTGRESQL_ONLY
    }
    assert {k: v for k, v in bad.items() if v} == {}


# -- DDL: every column and index option -----------------------------------------

INDEX_OPTIONS: dict[str, list[Any]] = {
    "unique": [False, True],
    "cockroachdb_inverted": [False, True],
    "cockroachdb_vector": [False, True],
    "cockroachdb_hash_sharded": [False, True],
    "cockroachdb_bucket_count": [None, 8],
    "cockroachdb_storing": [None, ["c"]],
    "cockroachdb_where": [None, "a > 0"],
    # True: the operator class of the index's kind on its column (see _index)
    "cockroachdb_ops": [False, True],
    "cockroachdb_visibility": [None, 0.0, 0.5],
}

#: The operator class each index kind takes on its last column: trigram
#: (https://www.cockroachlabs.com/docs/v24.3/trigram-indexes) and vector
#: (catformat/index.go, tests/crdb_facts/grammar.md section 5); a forward
#: index takes none (the compiler refuses "text_pattern_ops").
OPCLASS = {
    "inverted": "gin_trgm_ops",
    "vector": "vector_l2_ops",
    None: "text_pattern_ops",
}
#: The indexed column of each kind: JSONB, STRING with trigrams, VECTOR.
INDEXED = {"inverted": "b", "vector": "v", None: "a"}

#: The oldest recorded release that has every option of a combination:
#: CREATE VECTOR INDEX from v25.2 (compiler.py, _VECTOR_INDEX_SINCE); the
#: rest, VISIBILITY 0.5 (v23.2) included, at the support window's start.
OLDEST = "v24.3.0"
VECTOR_SINCE = "v25.2.1"


def test_every_cockroachdb_index_option_is_combined() -> None:
    """A new ``cockroachdb_*`` index option must join INDEX_OPTIONS above."""
    covered = {name.removeprefix("cockroachdb_") for name in INDEX_OPTIONS}
    assert set(_CRDB_INDEX_ARGS) | {"ops", "where"} <= covered


def _index_combinations() -> list[dict[str, Any]]:
    names = list(INDEX_OPTIONS)
    out = []
    for values in itertools.product(*INDEX_OPTIONS.values()):
        options = dict(zip(names, values, strict=True))
        out.append(options)
    return out


def _kind(options: dict[str, Any]) -> str | None:
    if options["cockroachdb_inverted"]:
        return "inverted"
    return "vector" if options["cockroachdb_vector"] else None


def _refused(options: dict[str, Any]) -> str | None:
    """What the compiler refuses in ``options`` (a CompileError match), if any.

    One index type at a time; no unique, hash-sharded or STORING inverted or
    vector index (cockroach pkg/sql/sem/idxtype/idxtype.go, create_index.go);
    an operator class only on an inverted or vector index (create_index.go
    "operator classes are only allowed for the last column of an inverted
    index").
    """
    if options["cockroachdb_inverted"] and options["cockroachdb_vector"]:
        return "exclude each other"
    kind = _kind(options)
    if kind and any(
        options[k]
        for k in (
            "unique",
            "cockroachdb_hash_sharded",
            "cockroachdb_bucket_count",
            "cockroachdb_storing",
        )
    ):
        return f"{kind} index cannot be"
    if options["cockroachdb_ops"] and kind is None:
        return "operator class"
    return None


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "t",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("b", sa.JSON),
        sa.Column("c", sa.String(20), comment="a comment"),
        sa.Column("d", sa.Integer, sa.Computed("a + 1")),
        sa.Column("e", sa.Integer, sa.Computed("a * 2", persisted=False)),
        sa.Column("f", sa.BigInteger, sa.Identity(start=5, increment=2)),
        sa.Column("g", sa.Enum("x", "y", name="g_enum")),
        sa.Column("h", sa.Uuid, server_default=sa.text("gen_random_uuid()")),
        sa.Column("u", sa.Numeric(10, 2), unique=True),
        sa.Column("v", sqlalchemy_crdb_async.VECTOR(3)),
        sa.CheckConstraint("a >= 0", name="t_a_check"),
    )


def _index(table: sa.Table, options: dict[str, Any]) -> sa.Index:
    kind = _kind(options)
    kw = dict(options)
    where = kw.pop("cockroachdb_where")
    column = INDEXED[kind]
    if kw.pop("cockroachdb_ops"):
        # trigrams index a STRING column
        column = "c" if kind == "inverted" else column
        kw["cockroachdb_ops"] = {column: OPCLASS[kind]}
    return sa.Index(
        "t_ix",
        table.c[column],
        cockroachdb_where=sa.text(where) if where else None,
        **kw,
    )


@pytest.mark.parametrize(
    "options",
    _index_combinations(),
    ids=lambda o: (
        "-".join(
            f"{k.split('_')[-1]}{'' if v is True else v}" for k, v in o.items() if v
        )
        or "plain"
    ),
)
def test_index_ddl_conforms(options: dict[str, Any]) -> None:
    label = VECTOR_SINCE if options["cockroachdb_vector"] else OLDEST
    dialect = crdb_dialect(label)
    table = _table(sa.MetaData())
    index = _index(table, options)
    refused = _refused(options)
    if refused:
        # refused by the compiler rather than by the server
        for ddl in (CreateIndex(index), CreateTable(table)):
            with pytest.raises(sa.exc.CompileError, match=refused):
                ddl.compile(dialect=dialect)
        return
    # standalone CREATE INDEX, and the same index inside CREATE TABLE
    create_index = str(CreateIndex(index).compile(dialect=dialect))
    assert_conforms(create_index)
    assert_conforms(str(CreateTable(table).compile(dialect=dialect)))
    if options["cockroachdb_visibility"] is not None:
        # the visibility clause is the last one (sql.y opt_index_visible)
        assert create_index.endswith(("NOT VISIBLE", "VISIBILITY 0.5"))


def test_vector_indexes_are_gated_below_v25_2() -> None:
    table = _table(sa.MetaData())
    index = _index(table, {**dict.fromkeys(INDEX_OPTIONS), "cockroachdb_vector": True})
    with pytest.raises(sa.exc.CompileError, match=r"v25\.2"):
        CreateIndex(index).compile(dialect=crdb_dialect(OLDEST))


@by_release
def test_table_ddl_conforms(release: str) -> None:
    dialect = release_dialect(release)
    metadata = sa.MetaData()
    table = _table(metadata)
    sa.Table(
        "child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("t_id", sa.ForeignKey("t.id", ondelete="CASCADE")),
        sa.UniqueConstraint("t_id", name="child_t_id_key"),
    )
    for ddl in metadata.sorted_tables:
        assert_conforms(str(CreateTable(ddl).compile(dialect=dialect)), release=release)
    assert_conforms(
        str(sa.schema.DropTable(table).compile(dialect=dialect)), release=release
    )
    enum = table.c.g.type
    for ddl in (CreateEnumType(enum), DropEnumType(enum)):
        assert_conforms(str(ddl.compile(dialect=dialect)), release=release)
    assert_conforms(
        str(sa.schema.CreateSequence(sa.Sequence("s")).compile(dialect=dialect)),
        release=release,
    )


@by_release
def test_alembic_operations_conform(release: str) -> None:
    """Alembic's statements for this dialect (offline mode: compiled, not run)."""
    dialect = release_dialect(release)
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect=dialect, opts={"as_sql": True, "output_buffer": buffer}
    )
    op = Operations(context)
    op.create_table(
        "acct",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer),
    )
    op.add_column("acct", sa.Column("x", sa.String(10), server_default="a"))
    op.alter_column("acct", "x", type_=sa.String(20), existing_type=sa.String(10))
    op.alter_column("acct", "x", nullable=False, existing_type=sa.String(20))
    op.alter_column("acct", "x", server_default=None)
    op.alter_column("acct", "x", comment="hello", existing_type=sa.String(20))
    op.alter_column("acct", "x", new_column_name="y")
    op.create_index("acct_n_idx", "acct", ["n"], cockroachdb_storing=["y"])
    op.create_index(
        "acct_h_idx",
        "acct",
        ["n"],
        cockroachdb_hash_sharded=True,
        cockroachdb_bucket_count=4,
    )
    op.create_unique_constraint("acct_n_key", "acct", ["n"])
    op.create_check_constraint("acct_n_check", "acct", "n > 0")
    op.create_foreign_key("acct_fk", "acct", "acct", ["n"], ["id"])
    op.drop_constraint("acct_fk", "acct", type_="foreignkey")
    op.drop_index("acct_n_idx", table_name="acct")
    op.rename_table("acct", "account")
    op.drop_column("account", "y")
    op.drop_table("account")
    statements = [s.strip() for s in buffer.getvalue().split(";") if s.strip()]
    assert len(statements) >= 15, statements
    for sql in statements:
        assert_conforms(sql, release=release)


def test_v26_3_runs_sqlalchemys_postgresql_18_catalogue_queries() -> None:
    """At v26.3 (server_version 18.0.0) SQLAlchemy takes its PostgreSQL >= 15
    path and reads ``pg_index.indnullsnotdistinct``; at v24.3 (13.0.0) it
    writes ``false`` instead. So the v26.3 capture checks other statements,
    against v26.3's catalogue (tests/crdb_facts/catalog_v26.md)."""
    captured = {}
    for release in ("v24.3", "v26.3"):
        dialect = release_dialect(release)
        recorder = Recorder(dialect, _answer_table_oids)
        dialect.get_multi_unique_constraints(
            recorder,
            schema=None,
            filter_names=None,
            scope=ObjectScope.DEFAULT,
            kind=ObjectKind.ANY,
            info_cache={},
        )
        captured[release] = "\n".join(recorder.statements)
        for sql in recorder.statements:
            assert_conforms(sql, release=release)
    assert "pg_index.indnullsnotdistinct" in captured["v26.3"]
    assert "pg_index.indnullsnotdistinct" not in captured["v24.3"]
