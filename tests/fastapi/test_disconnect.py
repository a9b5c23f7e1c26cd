"""A client that drops its socket mid-request, against a real uvicorn server.

uvicorn runs in the test's event loop on 127.0.0.1 (a socket the test binds to
a free port), is told to exit at the end and awaited with a bound. Each client
sends a POST whose endpoint writes a row (on the route's session, or on its
connection from ``connection_dependency``) and then waits (in Python, or in a
``pg_sleep`` on the server), and drops the connection once the endpoint said
it is waiting. Afterwards: every request task has ended, no connection is
checked out, no session is idle in a transaction, and no row was committed.

``pg_stat_activity`` is the server's view of its sessions, and it changes
after the client's side is done: a connection closed by force (SQLAlchemy
terminates one whose return was interrupted) stays "idle in transaction"
until its backend reads the end of the socket, which on a loaded machine can
be after the test looks. So the test counts only its own sessions (its own
``application_name``; the test database is shared with every other test) and
waits for the condition with a bounded poll, naming it when it gives up.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ..cancelling import backends, until
from .support import Probe, build_app, install, sleep_tag

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

uvicorn = pytest.importorskip("uvicorn", reason="needs uvicorn (the example extra)")

DISCONNECTS = 200
AT_ONCE = 20
BOUND_S = 60.0


class InFlight:
    """Pure ASGI middleware counting request tasks still running."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.running += 1
        self.idle.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
            if self.running == 0:
                self.idle.set()


async def _drop_after_hold(
    port: int, probe: Probe, n: int, admin: AsyncEngine, app_name: str
) -> None:
    note = f"dropped-{n}"
    in_query = n % 2 == 1
    # Half on the route's session, half on its connection (connection_dependency).
    path = "/conn/hold" if n % 4 >= 2 else "/hold"
    body = json.dumps({"body": note}).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path}?in_query={'true' if in_query else 'false'} HTTP/1.1\r\n"
            f"Host: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await probe.held(note).wait()
        if in_query:
            # Drop only once the server runs the pg_sleep: a cancel request
            # that arrives before the statement starts is ignored by
            # PostgreSQL (no driver can close that window), and the test is
            # about what the route does with a running statement.
            async def sleeping() -> bool:
                where = f"state = 'active' AND query LIKE '%{sleep_tag(note)}%'"
                return await backends(admin, app_name, where) == 1

            await until(sleeping, f"the pg_sleep of {note} to run")
    finally:
        writer.transport.abort()  # drop the socket, no FIN handshake wait
        writer.close()


@pytest.mark.timeout(180)
async def test_dropped_clients_leave_nothing_behind(crdb_url: URL) -> None:
    probe = Probe()
    app_name = "test_dropped_clients"
    app, engine = build_app(
        crdb_url.update_query_dict({"application_name": app_name}).render_as_string(
            hide_password=False
        ),
        probe,
    )
    admin = create_async_engine(crdb_url, poolclass=NullPool)
    await install(engine)
    in_flight = InFlight(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(AT_ONCE * 2)  # clients queue until uvicorn accepts
    port = sock.getsockname()[1]
    config = uvicorn.Config(in_flight, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))

    async def drive() -> None:
        for first in range(0, DISCONNECTS, AT_ONCE):
            await asyncio.gather(
                *(
                    _drop_after_hold(port, probe, n, admin, app_name)
                    for n in range(first, first + AT_ONCE)
                )
            )
            await in_flight.idle.wait()
            # Every request task has ended: its connection is back.
            assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    try:
        await asyncio.wait_for(drive(), BOUND_S)

        async def none_idle_in_transaction() -> bool:
            stuck = await backends(admin, app_name, "state LIKE 'idle in transaction%'")
            return stuck == 0

        await until(
            none_idle_in_transaction,
            "no session of the dropped requests left idle in a transaction",
        )

        async def no_statement_left_running() -> bool:
            running = await backends(
                admin, app_name, "state = 'active' AND query LIKE '%pg_sleep%'"
            )
            return running == 0

        # The requests cancelled in pg_sleep: the driver's cancel request
        # reached the server (a closed socket alone does not stop pg_sleep on
        # PostgreSQL). It did not when the route cancelled through an anyio
        # cancel scope, whose repeated cancellation closed the connection
        # before asyncpg had sent the cancel request.
        await until(no_statement_left_running, "no pg_sleep of a dropped request")
        async with engine.connect() as conn:
            written = await conn.scalar(
                sa.text("SELECT count(*) FROM notes WHERE body LIKE 'dropped-%'")
            )
        assert written == 0
        assert len(probe.holding) == DISCONNECTS
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, BOUND_S)
        sock.close()
        await engine.dispose()
        await admin.dispose()
