"""CockroachPool with real faults across servers: multi-host, node drain, restart.

A second PostgreSQL server is started for this module (the session's test
server is the first), so a restart here disturbs no other test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy import exc, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import PoolSettings, pool_stats
from sqlalchemy_crdb_async.testing import EmbeddedPostgres
from tests.pool.support import wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlalchemy_crdb_async.testing.provider import TestServer


@pytest.fixture(scope="module")
def second_server() -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def first_server(crdb_server: TestServer) -> EmbeddedPostgres:
    if crdb_server.embedded is None:
        pytest.skip("needs the embedded test server (a second host is started here)")
    return crdb_server.embedded


def url_for(*servers: EmbeddedPostgres) -> URL:
    hosts = tuple(f"127.0.0.1:{pg.port}" for pg in servers)
    return URL.create(
        "cockroachdb+asyncpg",
        username="postgres",
        database="postgres",
        query={"host": hosts} if len(hosts) > 1 else {"host": hosts[0]},
    )


@pytest.fixture
async def two_host_engine(
    first_server: EmbeddedPostgres, second_server: EmbeddedPostgres
) -> AsyncIterator[AsyncEngine]:
    settings = PoolSettings(pool_size=6, maintenance_interval_s=0.1)
    eng = create_async_engine(
        url_for(first_server, second_server), **settings.engine_kwargs()
    )
    try:
        yield eng
    finally:
        await eng.dispose()


async def fill(eng: AsyncEngine, n: int) -> list[tuple[int, int]]:
    """Hold ``n`` connections at once; (server port, backend pid) of each."""
    ready = asyncio.Barrier(n)

    async def one() -> tuple[int, int]:
        async with eng.connect() as conn:
            row = (
                await conn.execute(text("SELECT inet_server_port(), pg_backend_pid()"))
            ).one()
            await ready.wait()
            return int(row[0]), int(row[1])

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_multi_host_url_spreads_connections(
    two_host_engine: AsyncEngine,
    first_server: EmbeddedPostgres,
    second_server: EmbeddedPostgres,
) -> None:
    seen = await fill(two_host_engine, 6)
    per_port = Counter(port for port, _ in seen)
    assert per_port == {first_server.port: 3, second_server.port: 3}


async def test_drain_on_one_host_leaves_the_other_alone(
    two_host_engine: AsyncEngine,
    first_server: EmbeddedPostgres,
    second_server: EmbeddedPostgres,
) -> None:
    seen = await fill(two_host_engine, 6)
    admins = {
        pg.port: await asyncpg.connect(pg.url) for pg in (first_server, second_server)
    }
    try:
        async with two_host_engine.connect() as conn:
            port, pid = (
                await conn.execute(text("SELECT inet_server_port(), pg_backend_pid()"))
            ).one()

            async def kill() -> None:
                await asyncio.sleep(0.3)
                await admins[port].fetchval("SELECT pg_terminate_backend($1)", pid)

            killer = asyncio.create_task(kill())
            with pytest.raises(exc.DBAPIError):
                await conn.execute(text("SELECT pg_sleep(10)"))
            await killer
        drained = {p for prt, p in seen if prt == port}
        untouched = {p for prt, p in seen if prt != port}

        async def live(server_port: int) -> set[int]:
            rows = await admins[server_port].fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'postgres'"
            )
            return {int(r["pid"]) for r in rows}

        async def drained_closed() -> bool:
            return not (drained & await live(port))

        await wait_for(drained_closed, "idle connections to the drained host to close")
        other_port = next(p for p in admins if p != port)
        assert untouched <= await live(other_port)
        stats = pool_stats(two_host_engine)
        assert stats["invalidated_by_drain"] == len(drained)
        assert stats["connections_lost"] == 0
    finally:
        for admin in admins.values():
            await admin.close()


async def test_server_restart_costs_no_failed_checkout(
    second_server: EmbeddedPostgres,
) -> None:
    settings = PoolSettings(pool_size=3, idle_before_ping_s=None)
    eng = create_async_engine(url_for(second_server), **settings.engine_kwargs())
    try:
        before = {pid for _, pid in await fill(eng, 3)}
        await asyncio.to_thread(second_server.restart)

        async def noticed() -> bool:
            return pool_stats(eng)["connections_lost"] == 3

        # the server closed every idle connection; asyncpg tells the pool
        await wait_for(noticed, "the pool to notice the closed connections")
        after = {pid for _, pid in await fill(eng, 3)}
        assert not (before & after)
        assert pool_stats(eng)["checked_out"] == 0
    finally:
        await eng.dispose()
