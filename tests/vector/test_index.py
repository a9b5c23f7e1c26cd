"""Vector indexes on PostgreSQL with pgvector: the CockroachDB-style Index
becomes pgvector's hnsw; the search beam is set for one transaction only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from sqlalchemy_crdb_async import VECTOR, set_vector_search_beam

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

metadata = sa.MetaData()
points = sa.Table(
    "points",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("embedding", VECTOR(2)),
)
sa.Index(
    "points_embedding_idx",
    points.c.embedding,
    cockroachdb_vector=True,
    cockroachdb_ops={"embedding": "vector_cosine_ops"},
    # C-SPANN's partition sizes mean nothing to hnsw: left out on PostgreSQL
    cockroachdb_with={"min_partition_size": 16, "max_partition_size": 128},
)


async def test_index_is_hnsw_and_beam_is_per_transaction(pgvector_url: URL) -> None:
    engine = create_async_engine(pgvector_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                points.insert(),
                [{"id": i, "embedding": [1.0, i / 10]} for i in range(1, 50)],
            )
            indexdef = (
                await conn.execute(
                    sa.text(
                        "SELECT indexdef FROM pg_indexes "
                        "WHERE indexname = 'points_embedding_idx'"
                    )
                )
            ).scalar_one()
        async with AsyncSession(engine) as session, session.begin():
            await set_vector_search_beam(session, 77)
            inside = (await session.execute(sa.text("SHOW hnsw.ef_search"))).scalar()
            nearest = (
                await session.execute(
                    sa.select(points.c.id)
                    .order_by(points.c.embedding.cosine_distance([1.0, 0.1]))
                    .limit(1)
                )
            ).scalar_one()
        async with engine.connect() as conn:
            after = (await conn.execute(sa.text("SHOW hnsw.ef_search"))).scalar()
    finally:
        await engine.dispose()
    assert "USING hnsw (embedding vector_cosine_ops)" in indexdef
    assert inside == "77"
    assert after != "77"
    assert nearest == 1


async def test_bad_beam_size(pgvector_url: URL) -> None:
    engine = create_async_engine(pgvector_url)
    try:
        async with engine.connect() as conn:
            for bad in (0, -3, 2.5, True):
                with pytest.raises(ValueError, match="positive int"):
                    await set_vector_search_beam(conn, bad)  # type: ignore[arg-type]
    finally:
        await engine.dispose()
