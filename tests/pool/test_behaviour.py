"""CockroachPool against the live server: lifetimes, pings, resets, faults, types.

Faults are real: ``pg_terminate_backend`` from a second connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import CockroachPool, PoolSettings, pool_stats
from sqlalchemy_crdb_async.pool._reset import PING_SQL
from sqlalchemy_crdb_async.sqlstate import is_server_shutdown, sqlstates_of
from tests.pool.support import plain_url, query_log, settle, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sqlalchemy.engine import URL

COUNT_SCRATCH = (
    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scratch'"
)


@pytest.fixture
async def admin(crdb_url: URL) -> AsyncIterator[asyncpg.Connection]:
    """A connection outside any pool, for looking at and killing sessions."""
    conn = await asyncpg.connect(plain_url(crdb_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def make_engine(crdb_url: URL) -> AsyncIterator[Callable[..., AsyncEngine]]:
    engines: list[AsyncEngine] = []

    def make(**settings: Any) -> AsyncEngine:
        eng = create_async_engine(crdb_url, **PoolSettings(**settings).engine_kwargs())
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        await eng.dispose()


async def backend_pid(eng: AsyncEngine) -> int:
    async with eng.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def live_pids(admin: asyncpg.Connection) -> set[int]:
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL")
    return {int(r["pid"]) for r in rows}


async def test_engine_uses_cockroach_pool(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(pool_size=3)
    assert isinstance(eng.pool, CockroachPool)
    assert (await backend_pid(eng)) > 0
    stats = pool_stats(eng)
    assert stats["pool_size"] == 3
    assert stats["checkouts"] == 1
    assert stats["connections"] == 1
    assert stats["checked_out"] == 0


async def test_jitter_spreads_deadlines(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(pool_size=8, max_lifetime_s=100.0, lifetime_jitter_fraction=0.5)

    async def hold() -> None:
        async with eng.connect() as conn:
            await conn.execute(text("SELECT pg_sleep(0.2)"))

    await asyncio.gather(*(hold() for _ in range(8)))
    lifetimes = [c.lifetime_s for c in eng.pool.connections()]  # type: ignore[attr-defined]
    assert len(lifetimes) == 8
    assert all(lt is not None and 50.0 <= lt <= 100.0 for lt in lifetimes)
    assert len({round(lt or 0, 6) for lt in lifetimes}) == 8


async def test_no_jitter_gives_equal_lifetimes(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(pool_size=3, max_lifetime_s=60.0, lifetime_jitter_fraction=0.0)
    await asyncio.gather(*(backend_pid(eng) for _ in range(3)))
    lifetimes = {c.lifetime_s for c in eng.pool.connections()}  # type: ignore[attr-defined]
    # Exactly the setting: without jitter no arithmetic touches the lifetime
    # (it used to be derived back from deadline - opened: 59.999999999999886).
    assert lifetimes == {60.0}


async def test_idle_connection_past_lifetime_is_closed_without_checkout(
    make_engine: Callable[..., AsyncEngine], admin: asyncpg.Connection
) -> None:
    eng = make_engine(
        pool_size=3,
        max_lifetime_s=0.5,
        lifetime_jitter_fraction=0.0,
        maintenance_interval_s=0.1,
    )
    pids = set(await asyncio.gather(*(backend_pid(eng) for _ in range(3))))
    assert pids <= await live_pids(admin)

    async def all_closed() -> bool:
        # the server ends a backend as soon as it reads Terminate, a moment
        # before the pool's close() returns: wait for both
        closed = pool_stats(eng)["connections"] == 0
        return closed and not (pids & await live_pids(admin))

    await wait_for(all_closed, "idle expired connections to close")
    stats = pool_stats(eng)
    assert stats["recycled_by_lifetime"] == len(pids)
    assert stats["checkouts"] == 3


async def test_connection_past_lifetime_is_closed_on_return(
    make_engine: Callable[..., AsyncEngine], admin: asyncpg.Connection
) -> None:
    eng = make_engine(
        pool_size=1,
        max_lifetime_s=0.3,
        lifetime_jitter_fraction=0.0,
        maintenance_interval_s=3600.0,
    )
    async with eng.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.execute(text("SELECT pg_sleep(0.5)"))

    # Closed by the return itself (asyncpg's Terminate was sent and awaited);
    # the server removes the backend right after.
    async def gone() -> bool:
        return pid not in await live_pids(admin)

    await wait_for(gone, "the returned expired connection's backend to exit")
    assert pool_stats(eng)["recycled_by_lifetime"] == 1
    assert await backend_pid(eng) != pid


async def test_ping_only_after_idle_and_one_statement(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(pool_size=1, idle_before_ping_s=0.3)
    log = query_log(eng)
    await backend_pid(eng)

    log.clear()
    async with eng.connect():
        await settle()
        assert log == []  # reused at once: no ping
    log.clear()
    await asyncio.sleep(0.5)
    async with eng.connect():
        await settle()
        assert log == [PING_SQL]
    assert pool_stats(eng)["pings_sent"] == 1


async def test_stock_pre_ping_costs_three_statements(crdb_url: URL) -> None:
    # The baseline the one-statement ping is measured against.
    eng = create_async_engine(crdb_url, pool_size=1, pool_pre_ping=True)
    try:
        log = query_log(eng)
        await backend_pid(eng)
        log.clear()
        async with eng.connect():
            await settle()
            assert len(log) == 3
    finally:
        await eng.dispose()


async def test_server_shutdown_code_invalidates_and_recycles_host(
    make_engine: Callable[..., AsyncEngine], admin: asyncpg.Connection
) -> None:
    eng = make_engine(pool_size=2, maintenance_interval_s=0.1)

    async def two() -> tuple[int, int]:
        async with eng.connect() as a, eng.connect() as b:
            pa = (await a.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            pb = (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            return pa, pb

    idle_pid, victim_pid = await two()
    async with eng.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        other = victim_pid if pid == idle_pid else idle_pid

        async def kill() -> None:
            await asyncio.sleep(0.3)
            await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

        killer = asyncio.create_task(kill())
        with pytest.raises(exc.DBAPIError) as caught:
            await conn.execute(text("SELECT pg_sleep(10)"))
        await killer
        assert caught.value.connection_invalidated

    # PostgreSQL sent 57P01 (admin_shutdown) before closing the socket; the
    # pool also closed the idle connection to the same host.
    async def other_closed() -> bool:
        return other not in await live_pids(admin)

    await wait_for(other_closed, "the idle connection to the same host to close")
    stats = pool_stats(eng)
    assert stats["invalidated_by_drain"] == 2
    assert stats["connections_lost"] == 0
    assert await backend_pid(eng) not in {pid, other}


async def test_idle_connection_killed_by_server_is_replaced_silently(
    make_engine: Callable[..., AsyncEngine], admin: asyncpg.Connection
) -> None:
    eng = make_engine(pool_size=1, idle_before_ping_s=None)
    pid = await backend_pid(eng)
    await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def noticed() -> bool:
        return pool_stats(eng)["connections_lost"] == 1

    # asyncpg tells the pool when the server closes an idle connection.
    await wait_for(noticed, "the pool to notice the closed connection")
    new_pid = await backend_pid(eng)  # no error: the dead one was not handed out
    assert new_pid != pid
    assert pool_stats(eng)["connections_lost"] == 1


async def temp_tables(conn: AsyncConnection) -> int:
    # information_schema hides other sessions' temporary tables
    found = await conn.execute(text(COUNT_SCRATCH))
    return int(found.scalar_one())


async def test_session_state_does_not_leak(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(pool_size=1)
    select_one = text("SELECT CAST(:x AS int) + 1")
    async with eng.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        defaults = (
            await conn.execute(
                text(
                    "SELECT current_setting('application_name'), "
                    "current_setting('statement_timeout')"
                )
            )
        ).one()
        await conn.execute(text("SET application_name = 'borrower_one'"))
        await conn.execute(text("SET statement_timeout = '1234ms'"))
        if conn.dialect.is_cockroachdb:  # type: ignore[attr-defined]
            # CockroachDB: temporary tables are behind a session flag
            # (tests/crdb_facts/pg_catalog_support.md, pg_my_temp_schema()).
            await conn.execute(text("SET experimental_enable_temp_tables = 'on'"))
        await conn.execute(text("CREATE TEMP TABLE scratch (x int)"))
        assert await temp_tables(conn) == 1
        assert (await conn.execute(select_one, {"x": 1})).scalar_one() == 2
        await conn.commit()
    async with eng.connect() as conn:
        assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid
        now = (
            await conn.execute(
                text(
                    "SELECT current_setting('application_name'), "
                    "current_setting('statement_timeout')"
                )
            )
        ).one()
        assert tuple(now) == tuple(defaults)
        assert await temp_tables(conn) == 0
        # prepared statements cached on the connection survive the reset
        assert (await conn.execute(select_one, {"x": 2})).scalar_one() == 3
    assert pool_stats(eng)["resets"] == 2


async def test_startup_application_name_survives_reset(crdb_url: URL) -> None:
    url = crdb_url.update_query_dict({"application_name": "svc"})
    eng = create_async_engine(url, **PoolSettings(pool_size=1).engine_kwargs())
    try:
        for _ in range(2):
            async with eng.connect() as conn:
                name = await conn.execute(
                    text("SELECT current_setting('application_name')")
                )
                assert name.scalar_one() == "svc"
                await conn.execute(text("SET application_name = 'other'"))
    finally:
        await eng.dispose()


@pytest.mark.parametrize("shared", [True, False])
async def test_new_connection_reuses_type_introspection(
    make_engine: Callable[..., AsyncEngine], admin: asyncpg.Connection, shared: bool
) -> None:
    await admin.execute(
        "DROP TABLE IF EXISTS moods; DROP TYPE IF EXISTS mood; "
        "CREATE TYPE mood AS ENUM ('ok', 'meh'); "
        "CREATE TABLE moods (id int PRIMARY KEY, m mood, ms mood[]); "
        "INSERT INTO moods VALUES (1, 'ok', ARRAY['ok','meh']::mood[])"
    )
    eng = make_engine(pool_size=1, share_type_introspection=shared)
    log = query_log(eng)
    query = text("SELECT m, ms FROM moods WHERE id = 1")

    def introspections() -> int:
        return sum(1 for q in log if "pg_type" in q)

    async with eng.connect() as conn:
        assert (await conn.execute(query)).one() == ("ok", ["ok", "meh"])
        await settle()
        first = introspections()
        await conn.invalidate()  # the next checkout opens a new connection
    assert first >= 1
    log.clear()
    async with eng.connect() as conn:
        assert (await conn.execute(query)).one() == ("ok", ["ok", "meh"])
        await settle()
    if shared:
        assert introspections() == 0
        assert pool_stats(eng)["types_shared"] >= 1
    else:
        assert introspections() == first


async def test_psycopg_async_gets_the_generic_ping_and_reset(crdb_url: URL) -> None:
    url = crdb_url.set(drivername="cockroachdb+psycopg_async")
    settings = PoolSettings(pool_size=1, idle_before_ping_s=0.0)
    eng = create_async_engine(url, **settings.engine_kwargs())
    try:
        for _ in range(2):
            async with eng.connect() as conn:
                name = text("SELECT current_setting('application_name')")
                assert (await conn.execute(name)).scalar_one() == ""
                await conn.execute(text("SET application_name = 'leak'"))
        stats = pool_stats(eng)
        assert stats["connections_opened"] == 1
        assert stats["pings_sent"] == 1
        assert stats["resets"] == 2
    finally:
        await eng.dispose()


async def test_sqlstates_are_read_through_sqlalchemy_wrapping(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(pool_size=1)
    async with eng.connect() as conn:
        with pytest.raises(exc.ProgrammingError) as caught:
            await conn.execute(text("SELEC 1"))
    assert sqlstates_of(caught.value) == ["42601"]
    assert not is_server_shutdown(caught.value)
    assert pool_stats(eng)["connections_lost"] == 0


async def test_overflow_and_expiry_keep_the_pool_consistent(
    make_engine: Callable[..., AsyncEngine],
) -> None:
    eng = make_engine(
        pool_size=2,
        max_overflow=2,
        max_lifetime_s=0.4,
        lifetime_jitter_fraction=0.5,
        maintenance_interval_s=0.05,
    )
    barrier = asyncio.Barrier(4)

    async def hold() -> None:
        async with eng.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await barrier.wait()

    for _ in range(3):
        await asyncio.gather(*(hold() for _ in range(4)))

        async def drained() -> bool:
            return pool_stats(eng)["connections"] == 0

        await wait_for(drained, "every connection to expire or be discarded")
    stats = pool_stats(eng)
    assert stats["checked_out"] == 0
    assert stats["checkouts"] == 12
    assert stats["timeouts"] == 0
    # SQLAlchemy's own bookkeeping agrees: nothing out, no overflow left over
    assert eng.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert eng.pool.overflow() <= 0  # type: ignore[attr-defined]
