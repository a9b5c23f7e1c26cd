"""Cancellation the way anyio (and so FastAPI and Starlette) delivers it.

Each scenario runs in its own event loop under ``anyio.run``, once on plain
asyncio and once on uvloop (``BACKENDS``). ``cancel_when`` runs ``body`` in a
cancel scope and cancels that scope, by one of three mechanisms, as soon as
``ready()`` is true: ``scope.cancel()``, a deadline moved to now (what
``move_on_after`` does when it expires), or a task group whose sibling task
fails. anyio then re-delivers the cancellation on every turn of the event loop
until the body ends.
"""

from __future__ import annotations

import itertools
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from sqlalchemy_crdb_async import PoolSettings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sqlalchemy_crdb_async.pool import CockroachPool

#: anyio backends: asyncio, and asyncio on uvloop where uvloop exists.
BACKENDS = [
    pytest.param({"use_uvloop": False}, id="asyncio"),
    pytest.param(
        {"use_uvloop": True},
        id="uvloop",
        marks=pytest.mark.skipif(
            sys.platform == "win32", reason="uvloop does not run on Windows"
        ),
    ),
]
MECHANISMS = ["scope.cancel", "deadline", "task_group"]
#: Upper bound for waiting on the server (a condition, not a timing assertion).
SETTLE_S = 20.0


class _SiblingFailed(Exception):
    pass


def run(backend_options: dict[str, Any], main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main, backend="asyncio", backend_options=backend_options)


async def until(ready: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``ready`` (bounded by SETTLE_S); fail naming ``what``."""
    # The server's state can only be polled; at most SETTLE_S / 0.02 turns.
    for _ in range(int(SETTLE_S / 0.02)):
        if await ready():
            return
        await anyio.sleep(0.02)
    pytest.fail(f"gave up after {SETTLE_S} s waiting for {what}")


async def cancel_when(
    mechanism: str,
    body: Callable[[], Awaitable[None]],
    ready: Callable[[], Awaitable[bool]],
) -> None:
    """Run ``body``; cancel it by ``mechanism`` once ``ready()``; return after."""
    finished = False

    async def watch(scope: anyio.CancelScope) -> None:
        await until(ready, "the body to reach the point to cancel")
        if mechanism == "scope.cancel":
            scope.cancel()
        elif mechanism == "deadline":
            scope.deadline = anyio.current_time()
        else:
            raise _SiblingFailed

    async def guarded() -> None:
        nonlocal finished
        await body()
        finished = True

    if mechanism == "task_group":
        with pytest.RaisesGroup(_SiblingFailed):
            async with anyio.create_task_group() as tg:
                tg.start_soon(guarded)
                tg.start_soon(watch, tg.cancel_scope)
    else:
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(watch, scope)
                await guarded()
            assert scope.cancelled_caught
    assert not finished, "the body ran to its end: it was never cancelled"


async def backends(admin: AsyncEngine, app: str, where: str) -> int:
    """How many server sessions of ``app`` match ``where`` (pg_stat_activity)."""
    async with admin.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE application_name = '{app}' AND pid <> pg_backend_pid() AND {where}"
        )
        return int(result.scalar_one())


_apps = itertools.count()


class AppEngine:
    """A CockroachPool engine with its own application_name, the drivers it
    opened, and an admin engine to look at the server from outside."""

    def __init__(self, url: URL, **settings: Any) -> None:
        self.app = f"cancel_test_{next(_apps)}"
        self.engine: AsyncEngine = create_async_engine(
            url.update_query_dict({"application_name": self.app}),
            **PoolSettings(**settings).engine_kwargs(),
        )
        self.admin = create_async_engine(url, poolclass=NullPool)
        self.drivers: list[Any] = []
        event.listen(self.engine.sync_engine, "connect", self._connected)

    def _connected(self, dbapi_connection: Any, record: Any) -> None:
        self.drivers.append(dbapi_connection.driver_connection)

    @property
    def pool(self) -> CockroachPool:
        return self.engine.pool  # type: ignore[return-value]

    def open_pids(self) -> list[int]:
        return [d.get_server_pid() for d in self.drivers if not d.is_closed()]

    async def close(self) -> None:
        await self.engine.dispose()
        await self.admin.dispose()
