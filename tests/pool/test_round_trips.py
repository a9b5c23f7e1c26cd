"""Round trips per operation, counted on the wire, against stock SQLAlchemy.

FaultProxy counts the client's turns (a round trip each) between the engine and
the server; the counts are exact, so a change that adds a round trip fails
here. The session reset on return goes out with the closing ``ROLLBACK`` as one
message, or, after a ``COMMIT``, with the next borrower's ``BEGIN``
(:mod:`sqlalchemy_crdb_async.pool._reset`).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_crdb_async import PoolSettings
from sqlalchemy_crdb_async.testing import FaultProxy
from tests.pool.support import per_op

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

# no ping between operations, whatever the machine's load
SETTINGS = PoolSettings(pool_size=1, idle_before_ping_s=None)


@pytest.fixture
async def proxy(crdb_url: URL) -> AsyncIterator[FaultProxy]:
    assert crdb_url.port is not None
    async with FaultProxy("127.0.0.1", crdb_url.port) as p:
        yield p


@pytest.fixture
async def _table(crdb_url: URL) -> None:
    eng = create_async_engine(crdb_url)
    async with eng.begin() as conn:
        await conn.execute(
            sa.text("CREATE TABLE IF NOT EXISTS rt (id serial PRIMARY KEY, v int)")
        )
    await eng.dispose()


async def core_read(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def orm_read(eng: AsyncEngine) -> None:
    async with AsyncSession(eng) as session:
        await session.execute(sa.text("SELECT 1"))


async def core_write(eng: AsyncEngine) -> None:
    async with eng.begin() as conn:
        await conn.execute(sa.text("INSERT INTO rt (v) VALUES (1)"))


async def orm_write(eng: AsyncEngine) -> None:
    async with AsyncSession(eng) as session, session.begin():
        await session.execute(sa.text("INSERT INTO rt (v) VALUES (2)"))


async def core_rollback(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        await conn.execute(sa.text("INSERT INTO rt (v) VALUES (3)"))
        await conn.rollback()


async def write_then_read(eng: AsyncEngine) -> None:
    await core_write(eng)
    await core_read(eng)


# (operation, stock round trips, ours): BEGIN, the statement, ROLLBACK or
# COMMIT. Ours resets the session in the ROLLBACK's message; after a COMMIT
# the connection owes the reset, which travels in the next borrower's BEGIN
# (pool/_reset.py), so no operation pays a round trip of its own for it.
EXPECTED = [
    (core_read, 3, 3),
    (orm_read, 3, 3),
    (core_write, 3, 3),
    (orm_write, 3, 3),
    (core_rollback, 3, 3),
    (write_then_read, 6, 6),
]


@pytest.mark.usefixtures("_table")
@pytest.mark.parametrize(
    ("op", "stock", "ours"), EXPECTED, ids=[e[0].__name__ for e in EXPECTED]
)
async def test_round_trips_per_operation(
    proxy: FaultProxy, crdb_url: URL, op: Any, stock: int, ours: int
) -> None:
    assert await per_op(proxy, crdb_url, {}, op) == stock
    assert await per_op(proxy, crdb_url, SETTINGS.engine_kwargs(), op) == ours


async def test_reset_sent_with_rollback_still_resets(crdb_url: URL) -> None:
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    try:
        async with eng.connect() as conn:
            await conn.execute(sa.text("SET search_path = leaked"))
            await conn.commit()
            await conn.execute(sa.text("SELECT 1"))  # closed with a transaction open
        async with eng.connect() as conn:
            path = await conn.scalar(sa.text("SHOW search_path"))
        assert path != "leaked"
    finally:
        await eng.dispose()


async def _a_rollback_mid_checkout_keeps_session_state(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        await conn.execute(sa.text("SET search_path = kept"))
        await conn.commit()
        await conn.execute(sa.text("SELECT 1"))
        await conn.rollback()
        assert await conn.scalar(sa.text("SHOW search_path")) == "kept"


async def test_rollback_mid_checkout_keeps_session_state(crdb_url: URL) -> None:
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    try:
        await _a_rollback_mid_checkout_keeps_session_state(eng)
    finally:
        await eng.dispose()


async def test_an_arm_whose_rollback_never_went_out_is_dropped_on_return(
    crdb_url: URL,
) -> None:
    # close() arms the connection for its closing ROLLBACK, but a transaction
    # begun with no statement yet has none to send: the return drops the arm,
    # so the next borrower's own ROLLBACK mid-checkout resets nothing.
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    try:
        async with eng.connect() as conn:
            await conn.execute(sa.text("SET search_path = first"))
            await conn.commit()
            await conn.begin()
        assert _idle_driver(eng).crdb_armed is None
        await _a_rollback_mid_checkout_keeps_session_state(eng)
    finally:
        await eng.dispose()


async def test_reset_refused_with_rollback_falls_back(
    crdb_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    reset = eng.sync_engine.pool._session_reset  # type: ignore[attr-defined]
    real = reset.statements
    calls = 0

    def refuse_first(is_cockroachdb: bool) -> str:
        nonlocal calls
        calls += 1
        # undefined function (42883, after the ROLLBACK ran): refused for good,
        # and the reset alone is not
        return "SELECT no_such_fn()" if calls == 1 else real(is_cockroachdb)

    reset.statements = refuse_first
    try:
        async with eng.connect() as conn:
            await conn.execute(sa.text("SET search_path = leaked"))
            await conn.commit()
            with caplog.at_level(logging.WARNING):
                await conn.execute(sa.text("SELECT 1"))
        assert "resetting separately" in caplog.text
        assert reset.combine is False
        async with eng.connect() as conn:
            assert await conn.scalar(sa.text("SHOW search_path")) != "leaked"
            assert not await conn.scalar(
                sa.text(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE state = "
                    "'idle in transaction' AND pid <> pg_backend_pid() AND "
                    "datname = current_database()"
                )
            )
    finally:
        await eng.dispose()


async def test_session_reset_with_sessionmaker(crdb_url: URL) -> None:
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    sessions = async_sessionmaker(eng)
    try:
        async with sessions() as session:
            await session.execute(sa.text("SELECT pg_advisory_lock(4242)"))
        async with sessions() as session:
            held = await session.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objid = 4242"
                )
            )
        assert held == 0
    finally:
        await eng.dispose()


# -- the reset owed after a COMMIT (pool/_reset.py) ------------------------------


async def _owing_engine(url: URL) -> AsyncEngine:
    """A one-connection pool whose first reset on return already succeeded."""
    eng = create_async_engine(url, **SETTINGS.engine_kwargs())
    async with eng.begin() as conn:
        await conn.execute(sa.text("SELECT 1"))
    return eng


async def test_a_committed_set_never_reaches_the_next_checkout(crdb_url: URL) -> None:
    eng = await _owing_engine(crdb_url)
    try:
        async with eng.begin() as conn:
            await conn.execute(sa.text("SET search_path = leaked"))
            pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        driver = await _driver(eng)
        assert driver.crdb_owed is not None  # owed, not sent on return
        async with eng.connect() as conn:
            assert await conn.scalar(sa.text("SELECT pg_backend_pid()")) == pid
            assert await conn.scalar(sa.text("SHOW search_path")) != "leaked"
            await conn.rollback()
            # the reset ran in a block of its own: the rollback left it done
            assert await conn.scalar(sa.text("SHOW search_path")) != "leaked"
    finally:
        await eng.dispose()


async def test_an_owed_reset_is_paid_before_an_autocommit_statement(
    crdb_url: URL,
) -> None:
    # no BEGIN to travel with: the reset goes first, as a message of its own
    eng = await _owing_engine(crdb_url)
    try:
        async with AsyncSession(eng) as session, session.begin():
            await session.execute(sa.text("SET statement_timeout = 4321"))
        auto = eng.execution_options(isolation_level="AUTOCOMMIT")
        async with auto.connect() as conn:
            assert await conn.scalar(sa.text("SHOW statement_timeout")) == "0"
    finally:
        await eng.dispose()


async def test_a_checkout_that_sent_nothing_owes_nothing(crdb_url: URL) -> None:
    eng = await _owing_engine(crdb_url)
    try:
        async with eng.connect():
            pass
        assert (await _driver(eng)).crdb_owed is None
    finally:
        await eng.dispose()


@pytest.mark.parametrize(
    ("refused", "stops_combining"),
    [
        # an undefined function (42883): a permanent refusal
        pytest.param("SELECT crdb_no_such_function()", True, id="permanent"),
        # a division by zero (22012): not a refusal of the statement itself
        pytest.param("SELECT 1/0", False, id="transient"),
    ],
)
async def test_a_refused_reset_with_begin_is_sent_alone_and_still_resets(
    crdb_url: URL,
    caplog: pytest.LogCaptureFixture,
    refused: str,
    stops_combining: bool,
) -> None:
    eng = await _owing_engine(crdb_url)
    reset = eng.sync_engine.pool._session_reset  # type: ignore[attr-defined]
    try:
        async with eng.begin() as conn:
            await conn.execute(sa.text("SET search_path = leaked"))
        driver = await _driver(eng)
        assert driver.crdb_owed is not None
        real = reset.statements
        reset.statements = lambda crdb: refused  # refused in the BEGIN
        calls: list[str] = []
        reset.execute_async = _recording(calls, real)
        with caplog.at_level(logging.INFO):
            async with eng.connect() as conn:
                assert await conn.scalar(sa.text("SHOW search_path")) != "leaked"
        assert ("sending it on its own" in caplog.text) is stops_combining
        assert reset.combine_with_begin is not stops_combining
        assert calls == ["alone"]
    finally:
        await eng.dispose()


def _recording(calls: list[str], real: Any) -> Any:
    """The reset sent alone, with the real statements, noted in ``calls``."""

    async def execute_async(driver: Any, crdb: bool) -> None:
        calls.append("alone")
        assert driver.crdb_owed is None  # taken while it is paid
        await driver.crdb_execute_plain(real(crdb))

    return execute_async


async def _driver(eng: AsyncEngine) -> Any:
    pool = eng.sync_engine.pool
    (record,) = list(pool._records)  # type: ignore[attr-defined]
    return record.driver_connection


async def test_an_owed_reset_is_paid_before_a_copy(crdb_url: URL) -> None:
    eng = await _owing_engine(crdb_url)
    try:
        async with eng.begin() as conn:
            await conn.execute(sa.text("SET search_path = leaked"))
        driver = await _driver(eng)
        assert driver.crdb_owed is not None
        out = io.BytesIO()
        query = "SELECT current_setting('search_path')"
        await driver.copy_from_query(query, output=out)
        assert driver.crdb_owed is None
        assert b"leaked" not in out.getvalue()
    finally:
        await eng.dispose()


def _idle_driver(eng: AsyncEngine) -> Any:
    """The asyncpg connection of the engine's one idle pooled connection."""
    [record] = list(eng.sync_engine.pool._pool._queue._queue)  # type: ignore[attr-defined]
    return record.driver_connection


async def test_an_orm_session_close_sends_the_reset_with_its_rollback(
    crdb_url: URL,
) -> None:
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    try:
        # The first close finds SessionTransaction.close() by name, the
        # next ones by the depth it was found at (pool/_closing.py).
        for _ in range(3):
            async with AsyncSession(eng) as session:
                await session.execute(sa.text("SET LOCAL statement_timeout = 1000"))
            driver = _idle_driver(eng)
            # went out with the ROLLBACK: nothing owed to the next BEGIN
            assert driver.crdb_owed is None
            assert driver.crdb_clean is True
    finally:
        await eng.dispose()


async def test_a_session_on_the_callers_connection_leaves_its_state(
    crdb_url: URL,
) -> None:
    # The session did not open the connection, so its close is not the
    # connection's return to the pool: no reset, the caller's SET stays.
    eng = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    try:
        async with eng.connect() as conn:
            await conn.execute(sa.text("SET search_path = kept"))
            await conn.commit()
            for _ in range(2):
                async with AsyncSession(bind=conn) as session:
                    await session.execute(sa.text("SELECT 1"))
                assert await conn.scalar(sa.text("SHOW search_path")) == "kept"
                await conn.rollback()
    finally:
        await eng.dispose()
