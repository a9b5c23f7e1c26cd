"""CockroachDB constructs against the live server: UPSERT behaves as UPSERT on
both servers; CockroachDB-only constructs refuse PostgreSQL with CompileError."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from sqlalchemy_crdb_async import (
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

_T0 = dt.datetime(2024, 5, 6, 7, 8, 59, 999_800)
_US100 = dt.timedelta(microseconds=100)
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
        pytest.skip("needs PostgreSQL: checks that CockroachDB constructs are refused")
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
        # truncation toward zero, as MySQL: -90 s is -1 minute, not -2
        ("minute", dt.datetime(2024, 1, 1, 0, 1, 30), dt.datetime(2024, 1, 1), -1),
        ("second", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 1, 5), 1),
        # 493 us: CockroachDB's FLOAT extract() made the older formula give 492
        ("microsecond", _T0, _T0 + dt.timedelta(microseconds=493), 493),
        ("millisecond", _T0, _T0 + dt.timedelta(microseconds=1_999), 1),
        ("microsecond", _T0, _T0 + dt.timedelta(days=36500, microseconds=7), None),
        # backwards across a second boundary: -200 us, 0 whole seconds
        ("microsecond", _T0 + dt.timedelta(microseconds=300), _T0 + _US100, -200),
        ("second", _T0 + dt.timedelta(microseconds=300), _T0 + _US100, 0),
    ],
)
async def test_timestampdiff(
    engine: AsyncEngine,
    unit: str,
    start: dt.datetime,
    end: dt.datetime,
    expected: int | None,
) -> None:
    if expected is None:  # exact across a century: the interval in microseconds
        delta = end - start
        expected = (delta.days * 86_400 + delta.seconds) * 1_000_000
        expected += delta.microseconds
    stmt = sa.select(
        timestampdiff(
            unit, sa.literal(start, sa.DateTime), sa.literal(end, sa.DateTime)
        )
    )
    async with engine.connect() as conn:
        assert await conn.scalar(stmt) == expected


async def test_timestampdiff_with_time_zones(engine: AsyncEngine) -> None:
    tz = sa.DateTime(timezone=True)
    start = dt.datetime(2024, 3, 31, 0, 59, 59, 999_999, tzinfo=dt.timezone.utc)
    end = start.astimezone(dt.timezone(dt.timedelta(hours=2))) + dt.timedelta(
        hours=1, microseconds=493
    )
    stmt = sa.select(
        timestampdiff("microsecond", sa.literal(start, tz), sa.literal(end, tz)),
        timestampdiff("hour", sa.literal(start, tz), sa.literal(end, tz)),
    )
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SET TIME ZONE 'Europe/Berlin'")  # DST starts
        row = (await conn.execute(stmt)).one()
    assert tuple(row) == (3_600_000_493, 1)


async def test_float_epoch_formula_is_one_short(engine: AsyncEngine) -> None:
    """Why timestampdiff avoids it: with extract() as FLOAT, as CockroachDB
    returns it, trunc(epoch / 1e-06) turns 493 us into 492 (this server runs the
    FLOAT arithmetic because of the explicit cast)."""
    end = _T0 + dt.timedelta(microseconds=493)
    old = sa.text(
        "SELECT CAST(trunc(CAST(extract(epoch FROM CAST(:e AS TIMESTAMP) - "
        "CAST(:s AS TIMESTAMP)) AS FLOAT8) / 1e-06) AS BIGINT)"
    )
    async with engine.connect() as conn:
        assert await conn.scalar(old, {"s": _T0, "e": end}) == 492


@pytest.mark.parametrize(
    "unit",
    [sa.text("MINUTE"), sa.literal("minute"), sa.text(" Minute "), " MINUTE "],
    ids=["text", "literal", "text-spaces", "str-spaces"],
)
async def test_func_timestampdiff_as_the_older_package_spelled_it(
    engine: AsyncEngine, unit: object
) -> None:
    start, end = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 0, 1, 30)
    expr = sa.func.timestampdiff(
        unit, sa.literal(start, sa.DateTime), sa.literal(end, sa.DateTime)
    )
    airflow = (
        sa.func.timestampdiff(
            sa.text("MICROSECOND"),
            sa.literal(start, sa.DateTime),
            sa.literal(end, sa.DateTime),
        )
        / 1_000_000
    )
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(expr)) == 1
        # Airflow divides the microseconds by 1e6 and wants a fraction back
        assert await conn.scalar(sa.select(airflow)) == 90


@pytest.fixture
async def seeded(db: AsyncEngine) -> AsyncEngine:
    async with db.begin() as conn:
        await conn.execute(accounts.insert().values(id=1, balance=1, owner="a"))
    return db


@pytest.mark.crdb_only("AS OF SYSTEM TIME and index hints")
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


async def test_older_with_hint_form_on_postgresql_names_index_hint(
    db: AsyncEngine,
) -> None:
    stmt = sa.select(accounts).with_hint(accounts, "accounts_owner_idx")
    async with db.connect() as conn:
        if conn.dialect.is_cockroachdb:  # type: ignore[attr-defined]
            assert (await conn.execute(stmt)).all() == []
        else:
            with pytest.raises(sa.exc.CompileError, match=r"\*index_hint\("):
                await conn.execute(stmt)


@pytest.mark.crdb_only("SET TRANSACTION AS OF SYSTEM TIME")
async def test_crdb_set_transaction_as_of_system_time(seeded: AsyncEngine) -> None:
    async with seeded.connect() as conn, conn.begin():
        await conn.execute(set_transaction_as_of_system_time("-1us"))
        assert await conn.scalar(sa.select(sa.func.count()).select_from(accounts)) in (
            0,
            1,
        )


@pytest.mark.crdb_only("bounded staleness reads")
async def test_crdb_bounded_staleness_on_autocommit(seeded: AsyncEngine) -> None:
    async with seeded.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # bounded staleness: a single-row point lookup
        # (tests/crdb_facts/errors_more.json)
        stmt = as_of_system_time(
            sa.select(accounts.c.balance).where(accounts.c.id == 1),
            with_max_staleness("10s"),
        )
        assert await conn.scalar(stmt) in (None, 1)
