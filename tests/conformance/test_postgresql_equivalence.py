"""The CockroachDB rewrite of SQLAlchemy's catalogue queries means the same thing.

On CockroachDB the dialect replaces ``pg_collation_is_visible(oid)`` (which
CockroachDB lacks) with a search-path test (dialect/reflection.py
``crdb_catalog_query``). PostgreSQL has both, so running the original and the
rewritten column query on the real test server must give identical rows,
including for a collation outside the search path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope

from sqlalchemy_crdb_async.dialect.reflection import crdb_catalog_query

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine


def _both(conn: Connection) -> tuple[list[sa.Row], list[sa.Row], str, str]:
    dialect = conn.dialect
    # PGDialect's own query, whatever the SQLAlchemy version builds
    query = PGDialect._columns_query(
        dialect, "public", True, ObjectScope.DEFAULT, ObjectKind.TABLE
    )
    params = {"filter_names": ["collated_probe"]}
    original = conn.execute(query, params).all()
    rewritten_query = crdb_catalog_query(query)
    rewritten = conn.execute(rewritten_query, params).all()
    return (
        original,
        rewritten,
        str(query.compile(dialect=dialect)),
        str(rewritten_query.compile(dialect=dialect)),
    )


async def test_rewritten_column_query_matches_postgresql(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS collated_probe")
        await conn.exec_driver_sql("DROP SCHEMA IF EXISTS probe_coll CASCADE")
        await conn.exec_driver_sql("CREATE SCHEMA probe_coll")
        await conn.exec_driver_sql(
            'CREATE COLLATION probe_coll.c2 FROM "C"'  # not on the search path
        )
        await conn.exec_driver_sql(
            'CREATE TABLE collated_probe (a TEXT COLLATE "C", '
            "b TEXT COLLATE probe_coll.c2, c TEXT, d INT)"
        )
    try:
        async with engine.connect() as conn:
            original, rewritten, before, after = await conn.run_sync(_both)
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP TABLE IF EXISTS collated_probe")
            await conn.exec_driver_sql("DROP SCHEMA IF EXISTS probe_coll CASCADE")
    assert "pg_collation_is_visible" not in after
    assert [r[0] for r in original] == ["a", "b", "c", "d"]
    assert rewritten == original
    if "pg_collation_is_visible" in before:
        # SQLAlchemy 2.1 reflects collations: only the hidden schema is named
        collations = [r._mapping["collation"] for r in rewritten]
        assert collations == [
            {"name": "C", "schema": None},
            {"name": "c2", "schema": "probe_coll"},
            None,
            None,
        ]
