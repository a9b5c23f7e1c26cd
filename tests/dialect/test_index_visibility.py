"""Invisible, trigram and vector indexes: reflected from pg_indexes, written in DDL.

The ``pg_indexes.indexdef`` texts are recorded CockroachDB rows
(tests/crdb_facts/indexes.json ``pg_indexes.v25_rows``) with the suffixes and
operator classes CockroachDB prints after them, in the format of cockroach
``pkg/sql/catalog/catformat/index.go`` @0399fa0e31eb9607d5708d70e504cf7aaba94ddc
(``" NOT VISIBLE"``, ``" VISIBILITY " + "%.2f"``, ``USING gin (c gin_trgm_ops)``,
``USING cspann (e vector_l2_ops)``): no recorded row carries them. Reflection of
a whole table list replays recorded rows through :func:`crdb_indexes`.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from sqlalchemy_crdb_async import VECTOR
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.indexdef import parse_crdb_indexdef
from sqlalchemy_crdb_async.dialect.reflection import crdb_indexes
from sqlalchemy_crdb_async.dialect.server import parse_server_version
from tests import facts

ROWS = {
    row[1]: row for row in facts.load("indexes.json")["pg_indexes"]["v25_rows"]["rows"]
}
V22_1 = (
    "CockroachDB CCL v22.1.0 (x86_64-pc-linux-gnu, built 2022/05/23 16:27:47, go1.17.6)"
)
V23_1 = (
    "CockroachDB CCL v23.1.11 (x86_64-pc-linux-gnu, built 2023/09/27 01:53:43, "
    "go1.19.10)"
)
V25 = (
    "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, built 2025/06/02 23:17:23, "
    "go1.23.7 X:nocoverageredesign)"
)


def _dialect(version: str, server_version: str = "13.0.0") -> Any:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(version, server_version)
    return dialect


@pytest.mark.parametrize(
    ("suffix", "visibility"),
    [(" NOT VISIBLE", 0.0), (" VISIBILITY 0.50", 0.5), (" VISIBILITY 0.25", 0.25)],
)
@pytest.mark.parametrize("name", ["t3_a_b_idx", "t6_expr_idx1", "t2_t1_id_idx"])
def test_visibility_suffix_is_reflected(
    name: str, suffix: str, visibility: float
) -> None:
    indexdef = ROWS[name][2]
    plain = parse_crdb_indexdef(indexdef)
    parsed = parse_crdb_indexdef(indexdef + suffix)
    options = dict(parsed.pop("dialect_options"))
    assert options.pop("cockroachdb_visibility") == pytest.approx(visibility)
    plain_options = plain.pop("dialect_options", {})
    assert options == plain_options
    assert parsed == plain


def test_trigram_and_vector_columns_are_columns() -> None:
    trigram = parse_crdb_indexdef(
        "CREATE INDEX t_name_idx ON db.public.t USING gin (name gin_trgm_ops)"
    )
    assert trigram["column_names"] == ["name"]
    assert "expressions" not in trigram
    assert trigram["dialect_options"] == {
        "cockroachdb_inverted": True,
        "cockroachdb_ops": {"name": "gin_trgm_ops"},
    }
    vector = parse_crdb_indexdef(
        "CREATE INDEX t_e_idx ON db.public.t USING cspann (k ASC, e vector_l2_ops)"
        " NOT VISIBLE"
    )
    assert vector["column_names"] == ["k", "e"]
    assert vector["dialect_options"] == {
        "cockroachdb_vector": True,
        "cockroachdb_ops": {"e": "vector_l2_ops"},
        "cockroachdb_visibility": 0.0,
    }


class _Recorded:
    """Replays recorded pg_indexes rows where crdb_indexes() runs its query."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def execute(self, query: Any, params: Any) -> Any:
        return self

    def mappings(self) -> list[dict[str, Any]]:
        return self.rows


def test_an_index_the_parser_does_not_know_costs_only_itself() -> None:
    rows = [
        {"tablename": r[0], "indexname": r[1], "indexdef": r[2], "contype": None}
        for r in ROWS.values()
        if r[0] in ("t2", "t3")
    ]
    rows.append(
        {
            "tablename": "t3",
            "indexname": "t3_future_idx",
            "indexdef": "CREATE INDEX t3_future_idx ON db.public.t3 USING btree (a ASC)"
            " SOME FUTURE CLAUSE",
            "contype": None,
        }
    )
    with pytest.warns(sa.exc.SAWarning, match="t3_future_idx"):
        found = dict(crdb_indexes(_Recorded(rows), None, "public", ["t2", "t3"]))
    names = {key[1]: [i["name"] for i in value] for key, value in found.items()}
    assert names == {
        "t2": ["t2_pkey", "t2_t1_id_idx"],
        "t3": ["t3_a_b_idx"],
    }


def _table(**index_kw: Any) -> sa.Table:
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.Integer),
        sa.Column("name", sa.Text),
    )
    sa.Index("t_a_idx", table.c.a, **index_kw)
    return table


def _create_index(table: sa.Table, dialect: Any) -> str:
    (index,) = table.indexes
    return str(CreateIndex(index).compile(dialect=dialect))


@pytest.mark.parametrize(
    ("visibility", "clause"),
    [(0.0, " NOT VISIBLE"), (0.5, " VISIBILITY 0.5"), (1.0, "")],
)
def test_visibility_is_written_last(visibility: float, clause: str) -> None:
    table = _table(
        cockroachdb_visibility=visibility,
        cockroachdb_storing=["name"],
        cockroachdb_where=sa.text("a > 0"),
    )
    assert _create_index(table, _dialect(V25)) == (
        f"CREATE INDEX t_a_idx ON t (a) STORING (name) WHERE a > 0{clause}"
    )
    create_table = " ".join(
        str(CreateTable(table).compile(dialect=_dialect(V25))).split()
    )
    assert f"INDEX t_a_idx (a) STORING (name) WHERE a > 0{clause}" in create_table


def test_visibility_is_gated_on_the_version() -> None:
    with pytest.raises(sa.exc.CompileError, match=r"v22\.2"):
        _create_index(_table(cockroachdb_visibility=0.0), _dialect(V22_1))
    with pytest.raises(sa.exc.CompileError, match=r"v23\.2"):
        _create_index(_table(cockroachdb_visibility=0.5), _dialect(V23_1))
    assert _create_index(_table(cockroachdb_visibility=0.0), _dialect(V23_1)).endswith(
        "NOT VISIBLE"
    )


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_bad_visibility_is_refused(bad: Any) -> None:
    with pytest.raises(sa.exc.CompileError, match="cockroachdb_visibility"):
        _create_index(_table(cockroachdb_visibility=bad), _dialect(V25))


def test_postgresql_refuses_invisible_and_vector_indexes() -> None:
    pg = _dialect("PostgreSQL 15.18 on x86_64-pc-linux-gnu", "15.18")
    with pytest.raises(sa.exc.CompileError, match="no invisible indexes"):
        _create_index(_table(cockroachdb_visibility=0.0), pg)
    # a vector index on PostgreSQL is pgvector's hnsw, on a VECTOR column only
    with pytest.raises(sa.exc.CompileError, match="not a VECTOR column"):
        _create_index(_table(cockroachdb_vector=True), pg)
    assert _create_index(_table(cockroachdb_visibility=1.0), pg) == (
        "CREATE INDEX t_a_idx ON t (a)"
    )


def test_trigram_and_vector_ddl() -> None:
    table = _table()
    table.append_column(sa.Column("e", VECTOR(3)))
    sa.Index(
        "t_name_idx",
        table.c.name,
        cockroachdb_inverted=True,
        cockroachdb_ops={"name": "gin_trgm_ops"},
    )
    sa.Index(
        "t_e_idx",
        table.c.e,
        cockroachdb_vector=True,
        cockroachdb_ops={"e": "vector_l2_ops"},
    )
    by_name = {i.name: i for i in table.indexes}
    v25 = _dialect(V25)
    assert str(CreateIndex(by_name["t_name_idx"]).compile(dialect=v25)) == (
        "CREATE INVERTED INDEX t_name_idx ON t (name gin_trgm_ops)"
    )
    assert str(CreateIndex(by_name["t_e_idx"]).compile(dialect=v25)) == (
        "CREATE VECTOR INDEX t_e_idx ON t (e vector_l2_ops)"
    )
    with pytest.raises(sa.exc.CompileError, match=r"v25\.2"):
        CreateIndex(by_name["t_e_idx"]).compile(dialect=_dialect(V23_1))


@pytest.mark.parametrize(
    ("index_kw", "refusal"),
    [
        # cockroach pkg/sql/sem/idxtype/idxtype.go: only forward indexes can be
        # unique, hash-sharded or STORING
        ({"cockroachdb_vector": True, "unique": True}, "vector index cannot be"),
        ({"cockroachdb_vector": True, "cockroachdb_hash_sharded": True}, "vector"),
        ({"cockroachdb_vector": True, "cockroachdb_storing": ["name"]}, "vector"),
        ({"cockroachdb_vector": True, "cockroachdb_inverted": True}, "exclude"),
        # pkg/sql/create_index.go: "operator classes are only allowed for the
        # last column of an inverted index"
        ({"cockroachdb_ops": {"a": "int4_ops"}}, "operator class 'int4_ops'"),
    ],
)
def test_what_cockroachdb_refuses_is_a_compile_error(
    index_kw: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(sa.exc.CompileError, match=refusal):
        _create_index(_table(**index_kw), _dialect(V25))


def test_an_operator_class_goes_on_the_last_column_only() -> None:
    table = _table()
    sa.Index(
        "t_a_name_idx",
        table.c.a,
        table.c.name,
        cockroachdb_inverted=True,
        cockroachdb_ops={"a": "gin_trgm_ops"},
    )
    index = next(i for i in table.indexes if i.name == "t_a_name_idx")
    with pytest.raises(sa.exc.CompileError, match="last column"):
        CreateIndex(index).compile(dialect=_dialect(V25))
