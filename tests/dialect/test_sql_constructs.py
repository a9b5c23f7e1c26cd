"""CockroachDB constructs against the live server: UPSERT behaves as UPSERT on
both servers; CockroachDB-only constructs refuse PostgreSQL with CompileError."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from sqlalchemy_crdb_async.dialect.constructs import (
    as_of_system_time,
    follower_read_timestamp,
    index_hint,
    set_transaction_as_of_system_time,
    timestampdiff,
    upsert,
    with_max_staleness,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine

meta = sa.MetaData()
accounts = sa.Table(
    "accounts",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("balance", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(20)),
    sa.Index("accounts_owner_idx", "owner"),
)


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)


async def _rows(engine: AsyncEngine) -> list[tuple[int, int, str | None]]:
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(accounts).order_by(accounts.c.id))
        return [tuple(r) for r in result.all()]  # type: ignore[misc]


async def test_upsert_inserts_then_updates_only_given_columns(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(upsert(accounts).values(id=1, balance=10, owner="ann"))
        await conn.execute(upsert(accounts).values(id=1, balance=20))
    assert await _rows(db) == [(1, 20, "ann")]


async def test_upsert_many_rows(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(
            upsert(accounts), [{"id": 1, "balance": 1}, {"id": 2, "balance": 2}]
        )
        await conn.execute(
            upsert(accounts), [{"id": 2, "balance": 20}, {"id": 3, "balance": 3}]
        )
    assert await _rows(db) == [(1, 1, None), (2, 20, None), (3, 3, None)]


async def test_upsert_multi_values_and_returning(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(upsert(accounts).values(id=5, balance=1))
        result = await conn.execute(
            upsert(accounts)
            .values([{"id": 5, "balance": 50}, {"id": 6, "balance": 60}])
            .returning(accounts.c.id, accounts.c.balance)
        )
        assert sorted(result.all()) == [(5, 50), (6, 60)]


async def test_crdb_only_constructs_refuse_postgresql(db: AsyncEngine) -> None:
    if db.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip("PostgreSQL-only check")
    statements = [
        as_of_system_time(sa.select(accounts), "-1s"),
        as_of_system_time(sa.select(accounts), follower_read_timestamp()),
        as_of_system_time(sa.select(accounts), with_max_staleness("5s")),
        sa.select(accounts).with_hint(accounts, *index_hint("accounts_owner_idx")),
    ]
    async with db.connect() as conn:
        for stmt in statements:
            with pytest.raises(sa.exc.CompileError, match="CockroachDB-only"):
                await conn.execute(stmt)


@pytest.mark.parametrize(
    ("unit", "start", "end", "expected"),
    [
        ("second", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 1, 30), 90),
        ("minute", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 2, 59), 179),
        ("hour", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 1), -24),
        ("day", dt.datetime(2024, 1, 1), dt.datetime(2024, 3, 1), 60),
        ("week", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 20), 2),
        ("month", dt.datetime(2024, 1, 31), dt.datetime(2024, 3, 30), 1),
        ("quarter", dt.datetime(2024, 1, 1), dt.datetime(2024, 12, 31), 3),
        ("year", dt.datetime(2020, 2, 29), dt.datetime(2024, 2, 28), 3),
    ],
)
async def test_timestampdiff(
    engine: AsyncEngine, unit: str, start: dt.datetime, end: dt.datetime, expected: int
) -> None:
    stmt = sa.select(
        timestampdiff(
            unit, sa.literal(start, sa.DateTime), sa.literal(end, sa.DateTime)
        )
    )
    async with engine.connect() as conn:
        assert await conn.scalar(stmt) == expected


@pytest.fixture
async def seeded(db: AsyncEngine) -> AsyncEngine:
    async with db.begin() as conn:
        await conn.execute(accounts.insert().values(id=1, balance=1, owner="a"))
    return db


@pytest.mark.crdb_only
async def test_crdb_as_of_system_time_and_index_hints(seeded: AsyncEngine) -> None:
    async with seeded.connect() as conn:
        # AS OF SYSTEM TIME needs an implicit transaction (constructs.py)
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # a read in the past sees the table as it was (empty or missing rows)
        past = as_of_system_time(
            sa.select(sa.func.count()).select_from(accounts), "-1us"
        )
        assert await conn.scalar(past) in (0, 1)
        hinted = (
            sa.select(accounts.c.id)
            .with_hint(accounts, *index_hint("accounts_owner_idx", force=True))
            .where(accounts.c.owner == "a")
        )
        assert await conn.scalar(hinted) == 1


@pytest.mark.crdb_only
async def test_crdb_set_transaction_as_of_system_time(seeded: AsyncEngine) -> None:
    async with seeded.connect() as conn, conn.begin():
        await conn.execute(set_transaction_as_of_system_time("-1us"))
        assert await conn.scalar(sa.select(sa.func.count()).select_from(accounts)) in (
            0,
            1,
        )


@pytest.mark.crdb_only
async def test_crdb_bounded_staleness_on_autocommit(seeded: AsyncEngine) -> None:
    async with seeded.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # bounded staleness: a single-row point lookup (errors_more.json)
        stmt = as_of_system_time(
            sa.select(accounts.c.balance).where(accounts.c.id == 1),
            with_max_staleness("10s"),
        )
        assert await conn.scalar(stmt) in (None, 1)
