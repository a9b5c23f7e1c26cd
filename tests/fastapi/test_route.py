"""RetryingRoute and session_dependency against the test server, over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import weakref
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from sqlalchemy_crdb_async import retry_stats
from sqlalchemy_crdb_async.fastapi import RetryingRoute, _session, session_dependency
from sqlalchemy_crdb_async.retry._admission import (
    AdmissionSettings,
    admission_for,
    configure_admission,
)
from sqlalchemy_crdb_async.testing.embedded import free_port

from ..cancelling import until
from ..retry.support import new_counter
from .support import Probe, build_app, count_notes, install

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def probe() -> Probe:
    return Probe()


@pytest.fixture
async def app_engine(
    crdb_url: URL, probe: Probe
) -> AsyncIterator[tuple[FastAPI, AsyncEngine]]:
    app, engine = build_app(crdb_url.render_as_string(hide_password=False), probe)
    await install(engine)
    try:
        yield app, engine
    finally:
        await engine.dispose()


async def post_note(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    body: str,
    sqlstate: str,
    failures: int,
    path: str = "/notes",
) -> httpx.Response:
    """POST a note whose COMMIT fails ``failures`` times with ``sqlstate``."""
    return await client.post(
        path,
        params={"seq": await new_counter(engine)},
        json={"body": body, "sqlstate": sqlstate, "failures": failures},
    )


@pytest.fixture
def engine(app_engine: tuple[FastAPI, AsyncEngine]) -> AsyncEngine:
    return app_engine[1]


async def test_40001_at_commit_reruns_the_endpoint_once(
    client: httpx.AsyncClient, engine: AsyncEngine, probe: Probe
) -> None:
    before = retry_stats(engine)
    response = await post_note(client, engine, "once", "40001", 1)
    assert response.status_code == 200, response.text
    # The endpoint and its dependencies ran twice; the body was replayed.
    assert probe.runs["add_note"] == 2
    assert response.json()["dependency_run"] == 2
    assert await count_notes(engine, "once") == 1
    after = retry_stats(engine)
    assert after.retries - before.retries == 1
    assert after.retries_by_sqlstate.get("40001", 0) >= 1
    assert after.commits - before.commits == 1


async def test_connection_lost_before_commit_reruns_the_endpoint(
    client: httpx.AsyncClient, engine: AsyncEngine, probe: Probe
) -> None:
    response = await client.post("/notes/lose-connection", json={"body": "lost"})
    assert response.status_code == 200, response.text
    assert probe.runs["lose_connection"] == 2
    assert await count_notes(engine, "lost") == 1


async def test_non_retryable_error_at_commit_writes_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine, probe: Probe
) -> None:
    response = await post_note(client, engine, "checked", "23514", 1)
    assert response.status_code == 409
    assert response.json()["sqlstate"] == "23514"
    assert probe.runs["add_note"] == 1
    assert await count_notes(engine, "checked") == 0

    data = await post_note(client, engine, "range", "22003", 1)
    assert data.status_code == 422
    assert await count_notes(engine, "range") == 0


async def test_other_database_error_is_a_plain_500_without_a_trace(
    app_engine: tuple[FastAPI, AsyncEngine], engine: AsyncEngine
) -> None:
    transport = httpx.ASGITransport(app=app_engine[0], raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await post_note(c, engine, "boom", "P0001", 1)
    assert response.status_code == 500
    assert "Traceback" not in response.text
    assert "forced at COMMIT" not in response.text
    assert await count_notes(engine, "boom") == 0


async def test_exhausted_retries_answer_503_with_retry_after(
    client: httpx.AsyncClient, engine: AsyncEngine, probe: Probe
) -> None:
    response = await post_note(client, engine, "never", "40001", 100)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert probe.runs["add_note"] == 3  # the router's policy: max_attempts=3
    assert await count_notes(engine, "never") == 0
    # The endpoint's own policy wins over the router's.
    twice = await post_note(
        client, engine, "twice", "40P01", 100, path="/notes/two-attempts"
    )
    assert twice.status_code == 503
    assert probe.runs["two_attempts"] == 2


async def test_no_rerun_once_a_first_session_committed(
    app_engine: tuple[FastAPI, AsyncEngine], engine: AsyncEngine, probe: Probe
) -> None:
    transport = httpx.ASGITransport(app=app_engine[0], raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await post_note(
            c, engine, "split", "40001", 1, path="/notes/two-sessions"
        )
    # Not a 2xx, and not run again: the first session's note is in, once.
    assert response.status_code == 500
    assert probe.runs["two_sessions"] == 1
    assert await count_notes(engine, "split") == 1


async def test_ambiguous_commit_answers_503_outcome_unknown(
    client: httpx.AsyncClient, engine: AsyncEngine, probe: Probe
) -> None:
    # 40003 (statement completion unknown) raised by the server at COMMIT.
    response = await post_note(client, engine, "maybe", "40003", 1)
    assert response.status_code == 503
    body = response.json()
    assert body["outcome"] == "unknown"
    assert "same Idempotency-Key" in body["detail"]
    assert probe.runs["add_note"] == 1


async def test_http_exception_after_a_write_rolls_it_back(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post("/notes/teapot", json={"body": "teapot"})
    assert response.status_code == 418
    assert response.json() == {"detail": "no notes today"}
    refused = await client.post("/notes/refused-response", json={"body": "refused"})
    assert refused.status_code == 400
    assert await count_notes(engine, "teapot") == 0
    assert await count_notes(engine, "refused") == 0


async def test_retrying_session_inside_a_route(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post("/notes/replayed", json={"body": "inner"})
    assert response.status_code == 200, response.text
    assert await count_notes(engine, "inner") == 1


async def test_read_only_session_is_an_implicit_transaction(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # After its SELECT, the server reports no transaction open: no BEGIN was
    # sent, so no ROLLBACK is needed either. The writing session is in one.
    response = await client.get("/implicit")
    assert response.status_code == 200, response.text
    assert response.json() == {"in_transaction": False}
    assert (await client.get("/explicit")).json() == {"in_transaction": True}
    with pytest.raises(Exception, match="read-only"):
        await client.post("/implicit/write", json={"body": "ro"})
    assert await count_notes(engine, "ro") == 0
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "body", "counted"),
    [
        pytest.param("/conn/notes", "conn", "conn_note", id="connection_dependency"),
        pytest.param("/rc/notes", "rc", "rc_note", id="route_connection"),
    ],
)
async def test_the_routes_connection_commits_and_retries(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    probe: Probe,
    path: str,
    body: str,
    counted: str,
) -> None:
    """connection_dependency, and route_connection in the body (the same
    connection without Depends; the endpoint asks twice, gets it once)."""
    before = retry_stats(engine)
    response = await post_note(client, engine, body, "40001", 1, path)
    assert response.status_code == 200, response.text
    # The endpoint ran twice on a fresh connection each time; committed once.
    assert probe.runs[counted] == 2
    assert await count_notes(engine, body) == 1
    assert retry_stats(engine).commits - before.commits == 1
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_refused_answer_rolls_the_connection_back(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    refused = await client.post("/conn/notes/teapot", json={"body": "conn-teapot"})
    assert refused.status_code == 418
    assert await count_notes(engine, "conn-teapot") == 0
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_route_connection_read_only_is_an_implicit_transaction(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/rc/implicit")).json() == {"in_transaction": False}
    assert (await client.get("/rc/explicit")).json() == {"in_transaction": True}


async def test_route_connection_outside_the_route_says_what_to_do(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(RuntimeError, match="route_class=RetryingRoute"):
        await client.get("/plain/rc")


async def test_read_only_connection_is_an_implicit_transaction(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/conn/implicit")).json() == {"in_transaction": False}
    assert (await client.get("/conn/explicit")).json() == {"in_transaction": True}


async def test_reads_do_not_queue_behind_the_writers_gate(
    client: httpx.AsyncClient, engine: AsyncEngine, probe: Probe
) -> None:
    # One admission slot, held by a write that waits: a read-only session or
    # connection is answered meanwhile (it takes no slot); a second write
    # queues until the first is gone.
    configure_admission(engine, AdmissionSettings(initial_limit=1, max_limit=1))
    holder = asyncio.create_task(client.post("/hold", json={"body": "gate-holder"}))
    try:
        await asyncio.wait_for(probe.held("gate-holder").wait(), 30)
        for path in ("/implicit", "/conn/implicit"):
            read = await asyncio.wait_for(client.get(path), 30)
            assert read.json() == {"in_transaction": False}
        assert admission_for(engine).queued == 0
        writer = asyncio.create_task(client.get("/explicit"))

        async def writer_queued() -> bool:
            return admission_for(engine).queued == 1

        await until(writer_queued, "the second write to queue for the slot")
    finally:
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
    assert (await asyncio.wait_for(writer, 30)).json() == {"in_transaction": True}


async def test_unreachable_database_answers_503() -> None:
    url = f"cockroachdb+asyncpg://nobody@127.0.0.1:{free_port()}/nowhere"
    engine = create_async_engine(url)
    maker = async_sessionmaker(engine)
    router = APIRouter(route_class=RetryingRoute)
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
    finally:
        await engine.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in response.json()["detail"]


async def test_session_dependency_needs_the_retrying_route(crdb_url: URL) -> None:
    engine = create_async_engine(crdb_url)
    app = FastAPI()
    get_session = Depends(session_dependency(async_sessionmaker(engine)))

    @app.get("/")
    async def read(session: AsyncSession = get_session) -> None:
        pass

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            with pytest.raises(RuntimeError, match="route_class=RetryingRoute"):
                await c.get("/")
    finally:
        await engine.dispose()


def test_policy_must_be_a_retry_policy() -> None:
    with pytest.raises(TypeError, match="RetryPolicy"):
        RetryingRoute.configured(3)  # type: ignore[arg-type]


def test_import_without_fastapi_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import sqlalchemy_crdb_async.fastapi\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "pip install 'sqlalchemy-crdb-async[fastapi]'" in out.stdout


def test_route_connections_read_only_view_does_not_keep_the_engine(
    crdb_url: URL,
) -> None:
    made = create_async_engine(crdb_url)
    view = _session._autocommit_view(made)
    assert _session._autocommit_view(made) is view  # made once per engine
    assert view.sync_engine.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
    gone = weakref.ref(made.sync_engine)
    del made, view
    gc.collect()
    assert gone() is None
