"""Point read by primary key from a 10,000-row table.

One operation checks a connection out, reads one row chosen at random by its
primary key, and gives the connection back: raw asyncpg ``fetchrow``,
SQLAlchemy Core ``select()`` on ``engine.connect()``, and the ORM's
``AsyncSession.get()`` on a new session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Column, MetaData, String, Table, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from . import Ctx, Workload

if TYPE_CHECKING:
    import asyncpg

ROWS = 10_000
SQL = "SELECT id, name, qty FROM bench_items WHERE id = $1"

metadata = MetaData()
items = Table(
    "bench_items",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String),
    Column("qty", BigInteger),
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str]
    qty: Mapped[int] = mapped_column(BigInteger)


async def make_items(conn: asyncpg.Connection, rows: int = ROWS) -> None:
    """(Re)create ``bench_items`` with keys 1 to ``rows``: this workload's
    setup, and ``benchmarks/instructions.py``'s with fewer rows."""
    await conn.execute("DROP TABLE IF EXISTS bench_items")
    await conn.execute(
        "CREATE TABLE bench_items (id INT8 PRIMARY KEY, name TEXT NOT NULL, "
        "qty INT8 NOT NULL)"
    )
    # generate_series: one statement that PostgreSQL and CockroachDB both run.
    await conn.execute(
        "INSERT INTO bench_items (id, name, qty) SELECT i, 'item-' || i::TEXT, "
        f"i % 97 FROM generate_series(1, {int(rows)}) AS i"
    )
    await conn.execute("ANALYZE bench_items")


workload = Workload("point_read", __doc__, setup=make_items)


def _key(ctx: Ctx) -> int:
    return ctx.rng.randint(1, ROWS)


async def _raw(ctx: Ctx) -> None:
    row = await ctx.pool.fetchrow(SQL, _key(ctx))
    assert row is not None


async def _core(ctx: Ctx) -> None:
    """SQLAlchemy Core on AsyncEngine"""
    key = _key(ctx)
    async with ctx.engine.connect() as conn:
        row = (await conn.execute(select(items).where(items.c.id == key))).one()
    assert row.id == key


async def _orm(ctx: Ctx) -> None:
    """SQLAlchemy ORM on AsyncSession"""
    key = _key(ctx)
    async with ctx.sessionmaker() as session:
        item = await session.get(Item, key)
    assert item is not None


@workload.scenario("asyncpg", "fetchrow", reference=True)
async def asyncpg_fetchrow(ctx: Ctx) -> None:
    """asyncpg Pool.fetchrow (acquire, query, reset, release)"""
    await _raw(ctx)


@workload.scenario("asyncpg-noreset", "fetchrow")
async def asyncpg_noreset_fetchrow(ctx: Ctx) -> None:
    """asyncpg Pool.fetchrow with the pool's reset query disabled"""
    await _raw(ctx)


for _variant in ("sqlalchemy", "sqlalchemy-cockroachdb", "ours", "ours-pool"):
    workload.scenario(_variant, "Core")(_core)
    workload.scenario(_variant, "ORM")(_orm)
