"""Helpers shared by the pool tests: plain URLs, waiting for the server,
round trips and statements counted on the wire."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sqlalchemy_crdb_async.testing import FaultProxy

#: How long a test waits for something asynchronous (a backend to exit, a
#: shielded cleanup to finish) before it fails; not a timing assertion.
SETTLE_S = 20.0


def plain_url(url: URL) -> str:
    """``postgresql://...`` for asyncpg itself, from a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after SETTLE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while not await predicate():
        if loop.time() > deadline:
            pytest.fail(f"gave up after {SETTLE_S} s waiting for {what}")
        await asyncio.sleep(0.05)


#: Operations run before counting (connections opened, statements prepared),
#: then the operations counted.
WARMUP = 3
COUNTED = 5


async def per_op(
    proxy: FaultProxy,
    url: URL,
    kwargs: dict[str, Any],
    op: Callable[[AsyncEngine], Awaitable[Any]],
) -> int:
    """Round trips per ``op`` on an engine whose connections go through ``proxy``
    (``FaultProxy.stats().round_trips``: the client's turns on the wire); a
    whole number, or the test fails saying how many there were."""
    eng = create_async_engine(url.set(host="127.0.0.1", port=proxy.port), **kwargs)
    try:
        for _ in range(WARMUP):
            await op(eng)
        before = proxy.stats().round_trips
        for _ in range(COUNTED):
            await op(eng)
        total = proxy.stats().round_trips - before
        assert total % COUNTED == 0, f"{total} round trips for {COUNTED} operations"
        return total // COUNTED
    finally:
        await eng.dispose()


async def settle() -> None:
    """asyncpg calls query loggers with ``loop.call_soon``: let them run."""
    for _ in range(3):
        await asyncio.sleep(0)


def query_log(eng: AsyncEngine) -> list[str]:
    """Every statement asyncpg sends on the engine's connections, in order."""
    log: list[str] = []

    @event.listens_for(eng.sync_engine, "connect")
    def _attach(dbapi_conn: Any, record: Any) -> None:
        record.driver_connection.add_query_logger(lambda q: log.append(q.query))

    return log
