"""Reflection and Alembic with VECTOR columns and vector indexes.

Live on the pgvector server; CockroachDB mode by replaying CockroachDB's
catalogue answers through the real reflection code. Those rows are INFERRED
from cockroach's source, not recorded from a server (no logic test prints
them; tests/crdb_facts/vectors.md section 1.1): information_schema.columns
crdb_sql_type = VECTOR(3) (types.go SQLString), format_type() = vector without
the dimension (types.go SQLStandardNameWithTypmod), pg_indexes.indexdef =
USING cspann (... vector_l2_ops) (catformat/index.go, section 3.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import VECTOR
from sqlalchemy_crdb_async.dialect.indexdef import parse_crdb_indexdef
from sqlalchemy_crdb_async.dialect.reflection import merge_crdb_column
from sqlalchemy_crdb_async.dialect.types import crdb_type_name, type_from_crdb

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection


def model(dim: int = 3, ops: str = "vector_cosine_ops") -> sa.MetaData:
    meta = sa.MetaData()
    sa.Table(
        "docs",
        meta,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text),
        sa.Column("embedding", VECTOR(dim)),
        sa.Column("any_length", VECTOR()),
        sa.Index(
            "docs_embedding_idx",
            "embedding",
            cockroachdb_vector=True,
            cockroachdb_ops={"embedding": ops},
        ),
        sa.Index("docs_l2_idx", "embedding", cockroachdb_vector=True),
    )
    return meta


def _diff(conn: Connection, meta: sa.MetaData) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, meta))


def _reflect(conn: Connection) -> tuple[list[Any], list[Any]]:
    inspector = sa.inspect(conn)
    return inspector.get_columns("docs"), inspector.get_indexes("docs")


async def test_reflection_and_autogenerate_on_pgvector(pgvector_url: URL) -> None:
    engine = create_async_engine(pgvector_url)
    meta = model()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)
            await conn.run_sync(meta.create_all)
        async with engine.connect() as conn:
            columns, indexes = await conn.run_sync(_reflect)
            unchanged = await conn.run_sync(_diff, meta)
            new_dim = await conn.run_sync(_diff, model(dim=4))
            new_ops = await conn.run_sync(_diff, model(ops="vector_ip_ops"))
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)
    finally:
        await engine.dispose()
    types = {c["name"]: c["type"] for c in columns}
    assert isinstance(types["embedding"], VECTOR)
    assert types["embedding"].dim == 3
    assert isinstance(types["any_length"], VECTOR)
    assert types["any_length"].dim is None
    by_name = {i["name"]: i for i in indexes}
    cosine = by_name["docs_embedding_idx"]
    assert cosine["column_names"] == ["embedding"]
    assert cosine["dialect_options"]["cockroachdb_vector"] is True
    assert cosine["dialect_options"]["cockroachdb_ops"] == {
        "embedding": "vector_cosine_ops"
    }
    assert "cockroachdb_using" not in cosine["dialect_options"]
    assert unchanged == []
    changed = [d[0][0] if isinstance(d[0], tuple) else d[0] for d in new_dim]
    assert changed == ["modify_type"]
    assert new_dim[0][0][5].dim == 3  # existing type
    assert new_dim[0][0][6].dim == 4  # model's
    ops_kinds = sorted(d[0] for d in new_ops)
    assert ops_kinds == ["add_index", "remove_index"]


def test_crdb_column_type_reflects_with_dimension() -> None:
    # format_type() answers "vector" (no dimension) on CockroachDB; the
    # information_schema row's crdb_sql_type carries it (module docstring)
    pg_reflected = {"name": "embedding", "type": VECTOR(), "nullable": True}
    row = {
        "column_name": "embedding",
        "crdb_sql_type": "VECTOR(3)",
        "is_hidden": "NO",
        "is_nullable": "YES",
        "column_default": None,
        "is_generated": "NEVER",
        "generation_expression": "",
    }
    merged = merge_crdb_column(pg_reflected, row, include_hidden=False)
    assert merged is not None
    assert isinstance(merged["type"], VECTOR)
    assert merged["type"].dim == 3
    any_length = type_from_crdb("VECTOR")
    assert isinstance(any_length, VECTOR)
    assert any_length.dim is None
    assert crdb_type_name(VECTOR(3)) == "VECTOR(3)"


def test_crdb_vector_index_reflects_with_operator_class() -> None:
    index = parse_crdb_indexdef(
        "CREATE INDEX docs_embedding_idx ON defaultdb.public.docs "
        "USING cspann (customer_id ASC, embedding vector_l2_ops)"
    )
    assert index["column_names"] == ["customer_id", "embedding"]
    assert index["dialect_options"] == {
        "cockroachdb_vector": True,
        "cockroachdb_ops": {"embedding": "vector_l2_ops"},
    }


def test_alembic_compares_crdb_vector_indexes_by_kind() -> None:
    # CockroachDB's pg_indexes may print vector_l2_ops for a cosine index
    # (catformat/index.go TODO(#144016)): only the kind is compared there
    from sqlalchemy_crdb_async.dialect.alembic import CockroachDBImpl
    from tests.conformance.recording import crdb_dialect

    impl = CockroachDBImpl.__new__(CockroachDBImpl)
    impl.dialect = crdb_dialect("v25.4.0-alpha.2 (dev build)")
    table = model().tables["docs"]
    declared = next(i for i in table.indexes if i.name == "docs_embedding_idx")
    printed = sa.Index(
        "docs_embedding_idx",
        table.c.embedding,
        cockroachdb_vector=True,
        cockroachdb_ops={"embedding": "vector_l2_ops"},
    )
    plain = sa.Index("docs_plain_idx", table.c.body)
    assert impl._dialect_options(declared) == impl._dialect_options(printed)
    assert impl._dialect_options(declared) != impl._dialect_options(plain)


#: pg_indexes rows for docs on CockroachDB: INFERRED from catformat/index.go
#: (tests/crdb_facts/vectors.md section 3.1: pg mode prints USING cspann, the
#: vector column with vector_l2_ops, prefix columns with ASC, no storage
#: parameters), not recorded from a server.
_CRDB_DOCS_INDEXES = [
    {
        "tablename": "docs",
        "indexname": "docs_pkey",
        "indexdef": "CREATE UNIQUE INDEX docs_pkey ON defaultdb.public.docs "
        "USING btree (id ASC)",
        "contype": "p",
    },
    {
        "tablename": "docs",
        "indexname": "docs_embedding_idx",
        "indexdef": "CREATE INDEX docs_embedding_idx ON defaultdb.public.docs "
        "USING cspann (embedding vector_l2_ops)",
        "contype": None,
    },
    {
        "tablename": "docs",
        "indexname": "docs_l2_idx",
        "indexdef": "CREATE INDEX docs_l2_idx ON defaultdb.public.docs "
        "USING cspann (embedding vector_l2_ops)",
        "contype": None,
    },
]


def _crdb_answer(sql: str) -> list[dict[str, Any]] | None:
    if "pg_catalog.pg_class.oid, pg_catalog.pg_class.relname \n" in sql:
        return [{"oid": 60, "relname": "docs"}]
    if "FROM pg_catalog.pg_indexes AS i" in sql and "i.indexdef" in sql:
        return _CRDB_DOCS_INDEXES
    if "FROM pg_catalog.pg_indexes AS i" in sql:
        return [
            {k: r[k] for k in ("tablename", "indexname")} for r in _CRDB_DOCS_INDEXES
        ]
    return None


def test_alembic_on_crdb_catalogue_sees_no_vector_index_change() -> None:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations import ops

    from tests.conformance.recording import Recorder, crdb_dialect
    from tests.conformance.test_recorded_answers import _compare_indexes_and_uniques

    dialect = crdb_dialect("v25.4.0-alpha.2 (dev build)")
    recorder = Recorder(dialect, _crdb_answer)
    recorder.engine = type("RecordedEngine", (), {"dialect": dialect})()
    recorder._transaction = None
    autogen = AutogenContext(MigrationContext.configure(connection=recorder))
    db_table = model().tables["docs"]
    unchanged = ops.ModifyTableOps("docs", [], schema=None)
    _compare_indexes_and_uniques(
        autogen, unchanged, None, "docs", db_table, model().tables["docs"]
    )
    assert unchanged.ops == []
    dropped = model().tables["docs"]
    dropped.indexes.discard(next(i for i in dropped.indexes if i.name == "docs_l2_idx"))
    changed = ops.ModifyTableOps("docs", [], schema=None)
    _compare_indexes_and_uniques(autogen, changed, None, "docs", db_table, dropped)
    assert [type(o).__name__ for o in changed.ops] == ["DropIndexOp"]


def test_alembic_compares_vector_dimensions_exactly() -> None:
    from sqlalchemy_crdb_async.dialect.alembic import CockroachDBImpl
    from tests.conformance.recording import crdb_dialect

    impl = CockroachDBImpl.__new__(CockroachDBImpl)
    impl.dialect = crdb_dialect("v25.4.0-alpha.2 (dev build)")

    def differs(found: Any, declared: Any) -> bool:
        return impl.compare_type(sa.Column("e", found), sa.Column("e", declared))

    assert not differs(VECTOR(3), VECTOR(3))
    assert differs(VECTOR(3), VECTOR(4))
    assert differs(VECTOR(), VECTOR(3))
    assert differs(VECTOR(3), sa.Text())
