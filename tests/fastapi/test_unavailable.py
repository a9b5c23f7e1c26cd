"""A database that cannot be reached, or refuses the app's login, under
RetryingRoute: 503 with Retry-After after one connect, one log line."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from sqlalchemy_crdb_async import RetryPolicy, retry_stats
from sqlalchemy_crdb_async.fastapi import RetryingRoute, session_dependency
from sqlalchemy_crdb_async.testing import FaultProxy
from sqlalchemy_crdb_async.testing.embedded import free_port

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

#: The example app's policy: many attempts for hot rows. A failed connect
#: must not use them up (200 x 0.1 s was a 10 s wait per request).
MANY_ATTEMPTS = RetryPolicy(
    max_attempts=200, initial_backoff_s=0.05, max_backoff_s=0.1, deadline_s=30.0
)
#: Far above one refused connect on a loaded machine, far below 200 attempts.
GENEROUS_S = 8.0


async def get_once(url: str | URL) -> tuple[httpx.Response, int]:
    """GET a route whose endpoint needs a connection; the answer and the
    attempts the route made."""
    engine = create_async_engine(url)
    maker = async_sessionmaker(engine)
    router = APIRouter(route_class=RetryingRoute.configured(MANY_ATTEMPTS))
    get_session = Depends(session_dependency(maker))

    @router.get("/")
    async def read(session: AsyncSession = get_session) -> None:
        await session.connection()

    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.get("/")
        return response, retry_stats(engine).attempts
    finally:
        await engine.dispose()


def logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Warnings and errors from anyone, and our INFO lines (not httpx's)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        or (r.levelno >= logging.INFO and r.name.startswith("sqlalchemy_crdb_async"))
    ]


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_nothing_listening_answers_503_after_one_connect(
    caplog: pytest.LogCaptureFixture, driver: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"cockroachdb+{driver}://root@127.0.0.1:{free_port()}/defaultdb"
    started = time.monotonic()
    response, attempts = await get_once(url)
    assert time.monotonic() - started < GENEROUS_S
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in response.json()["detail"]
    assert attempts == 1
    [line] = logged(caplog)
    assert line.levelno == logging.WARNING
    assert line.exc_info is None
    assert "answered 503" in line.getMessage()
    assert "\n" not in line.getMessage()
    # the traceback is there for whoever turns DEBUG on
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)


async def test_proxy_refusing_connects_is_asked_once(crdb_url: URL) -> None:
    assert crdb_url.port is not None
    async with FaultProxy("127.0.0.1", crdb_url.port) as proxy:
        proxy.refuse_new = True
        response, attempts = await get_once(
            crdb_url.set(host="127.0.0.1", port=proxy.port)
        )
        refused = proxy.stats().connections_refused
    assert response.status_code == 503
    assert attempts == 1
    assert refused == 1


async def test_refused_login_is_503_with_an_error_line(
    crdb_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response, attempts = await get_once(crdb_url.set(username="no_such_role"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert attempts == 1
    [line] = logged(caplog)
    assert line.levelno == logging.ERROR
    assert "SQLSTATE 28000" in line.getMessage()
    assert "password" in line.getMessage()
