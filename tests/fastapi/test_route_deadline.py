"""RetryingRoute keeps the retry promises: the deadline, a replay that finds
changed data, CockroachDB's transient errors. On the test server, over ASGI."""

# No `from __future__ import annotations`: FastAPI resolves the endpoints'
# Annotated aliases, local to the fixture, at run time.

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sqlalchemy_crdb_async import RetryPolicy, retry_stats, retrying_session
from sqlalchemy_crdb_async.fastapi import (
    RetryingRoute,
    retry_policy,
    session_dependency,
)

DEADLINE_S = 2.0
BOUND_S = DEADLINE_S + 1.0
APP = "i19_route_deadline"


@pytest.fixture
async def app_engine(crdb_url: URL) -> AsyncIterator[tuple[FastAPI, AsyncEngine]]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        crdb_url, connect_args={"server_settings": {"application_name": APP}}
    )
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)"
        )
        await conn.exec_driver_sql("DELETE FROM kv")
        await conn.exec_driver_sql("INSERT INTO kv VALUES (1, 0), (2, 200)")
        await conn.exec_driver_sql("CREATE SEQUENCE IF NOT EXISTS route_transient")
        await conn.exec_driver_sql(
            """
            CREATE OR REPLACE FUNCTION route_unavailable(times int) RETURNS int
            LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('route_transient') <= times THEN
                RAISE EXCEPTION 'key range id:7 is unavailable'
                  USING ERRCODE = '58C00';
              END IF;
              RETURN 1;
            END $$
            """
        )
    maker = async_sessionmaker(engine, expire_on_commit=False)
    serializable = async_sessionmaker(
        engine.execution_options(isolation_level="SERIALIZABLE"),
        expire_on_commit=False,
    )
    Write = Annotated[AsyncSession, Depends(session_dependency(maker))]
    runs: Counter[str] = Counter()
    fast = RetryPolicy(
        deadline_s=DEADLINE_S, initial_backoff_s=0.001, max_backoff_s=0.01
    )
    router = APIRouter(route_class=RetryingRoute.configured(fast))

    @router.post("/locked")
    async def update_locked_row(session: Write) -> dict[str, str]:
        runs["locked"] += 1
        await session.execute(sa.text("UPDATE kv SET v = v + 1 WHERE k = 1"))
        return {"ok": "yes"}

    @router.post("/sleep")
    async def slow_statement(session: Write) -> dict[str, str]:
        await session.execute(sa.text("UPDATE kv SET v = -1 WHERE k = 1"))
        await session.execute(sa.text("SELECT pg_sleep(60)"))
        return {"ok": "never"}

    @router.post("/replay")
    async def replay_finds_changed_data() -> dict[str, int]:
        runs["replay"] += 1
        async with retrying_session(
            serializable, policy=fast, lock_on_read=False
        ) as own:
            v = (
                await own.execute(sa.text("SELECT v FROM kv WHERE k = 2"))
            ).scalar_one()
            if runs["replay"] == 1:  # a real concurrent write, committed
                async with engine.begin() as other:
                    await other.exec_driver_sql(
                        "UPDATE kv SET v = v + 1000 WHERE k = 2"
                    )
            # SERIALIZABLE: 40001 "could not serialize access due to concurrent
            # update"; the replay's SELECT then reads 1200: ReplayMismatchError
            await own.execute(sa.text("UPDATE kv SET v = :v WHERE k = 2"), {"v": v + 1})
            return {"v": v + 1}

    @router.post("/unavailable")
    @retry_policy(RetryPolicy(max_attempts=2, initial_backoff_s=0.001))
    async def range_unavailable(session: Write, times: int) -> dict[str, int]:
        runs["unavailable"] += 1
        await session.execute(sa.text("SELECT route_unavailable(:t)"), {"t": times})
        return {"runs": runs["unavailable"]}

    app = FastAPI()
    app.include_router(router)
    app.state.runs = runs
    app.state.serializable = serializable.kw["bind"]
    try:
        yield app, engine
    finally:
        await engine.dispose()


async def ours_active(engine: AsyncEngine, holder_pid: int) -> list[object]:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = "
            f"'{APP}' AND state <> 'idle' AND pid <> pg_backend_pid() "
            f"AND pid <> {holder_pid}"
        )
        return list(result.all())


async def wait_until_gone(engine: AsyncEngine, holder_pid: int) -> None:
    """A bounded poll until the request's server session is gone or idle."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10
    while left := await ours_active(engine, holder_pid):
        if loop.time() > give_up:
            pytest.fail(f"the request's server session is still there: {left}")
        await asyncio.sleep(0.05)


async def test_a_held_lock_answers_503_at_the_deadline(
    client: httpx.AsyncClient, app_engine: tuple[FastAPI, AsyncEngine]
) -> None:
    engine = app_engine[1]
    holder = await engine.connect()
    await holder.begin()
    await holder.exec_driver_sql("SELECT v FROM kv WHERE k = 1 FOR UPDATE")
    pid = (await holder.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    try:
        started = time.monotonic()
        response = await client.post("/locked")
        took_s = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert "deadline" in response.json()["detail"]
        assert took_s < BOUND_S, f"answered {took_s:.3f} s after the request"
        # cancelled on the server while the lock is still held: not waiting
        await wait_until_gone(engine, pid)
        await holder.exec_driver_sql("UPDATE kv SET v = 100 WHERE k = 1")
        await holder.commit()
    finally:
        await holder.close()
    async with engine.connect() as conn:
        value = (await conn.exec_driver_sql("SELECT v FROM kv WHERE k = 1")).scalar()
    assert value == 100  # the cancelled UPDATE never ran


async def test_a_replay_mismatch_reruns_the_endpoint_and_answers_200_once(
    client: httpx.AsyncClient, app_engine: tuple[FastAPI, AsyncEngine]
) -> None:
    app, engine = app_engine
    before = retry_stats(app.state.serializable)
    response = await client.post("/replay")
    assert response.status_code == 200, response.text
    assert response.json() == {"v": 1201}
    assert app.state.runs["replay"] == 2
    after = retry_stats(app.state.serializable)
    assert after.replay_mismatches - before.replay_mismatches == 1
    async with engine.connect() as conn:
        value = (await conn.exec_driver_sql("SELECT v FROM kv WHERE k = 2")).scalar()
    assert value == 1201  # committed once, on the changed data


async def test_a_transient_error_reruns_then_answers_503_with_retry_after(
    client: httpx.AsyncClient, app_engine: tuple[FastAPI, AsyncEngine]
) -> None:
    _app, engine = app_engine
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER SEQUENCE route_transient RESTART")
    once = await client.post("/unavailable", params={"times": 1})
    assert once.status_code == 200, once.text
    assert once.json() == {"runs": 2}
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER SEQUENCE route_transient RESTART")
    left = await client.post("/unavailable", params={"times": 5})
    assert left.status_code == 503, left.text
    assert left.headers["Retry-After"] == "1"
    assert left.json()["sqlstate"] == "58C00"


async def test_a_slow_statement_answers_503_at_the_deadline(
    client: httpx.AsyncClient, app_engine: tuple[FastAPI, AsyncEngine]
) -> None:
    engine = app_engine[1]
    started = time.monotonic()
    response = await client.post("/sleep")
    took_s = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert took_s < BOUND_S, f"answered {took_s:.3f} s after the request"
    await wait_until_gone(engine, 0)
    async with engine.connect() as conn:
        value = (await conn.exec_driver_sql("SELECT v FROM kv WHERE k = 1")).scalar()
    assert value == 0  # rolled back
