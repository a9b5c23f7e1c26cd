"""``FaultProxy``: a TCP proxy on 127.0.0.1 that injects network faults.

Put it between your application and the database to see what your code does
when the network misbehaves: latency, a cut, a refused connect, a silent
(half-open) peer, a response cut off in the middle::

    from sqlalchemy_crdb_async.testing import FaultProxy

    async with FaultProxy("127.0.0.1", 26257) as proxy:
        url = make_url("cockroachdb+asyncpg://root@127.0.0.1/defaultdb").set(
            port=proxy.port
        )
        engine = create_async_engine(url)
        proxy.delay_ms = 0.5           # each direction: 1 ms round trip
        proxy.cut_all()                # every proxied connection closed at once
        proxy.refuse_new = True        # new connects are refused (reset)
        proxy.silent = True            # nothing forwarded, nothing closed
        proxy.drop_response(after_bytes=10, trigger=b"COMMIT")  # cut mid-answer

What each fault looks like to the client
    ``cut_all()``
        Both sockets of every proxied connection are reset (RST, not FIN): the
        client's next read or write fails with a connection error.
    ``refuse_new``
        A connection accepted while it is set is reset at once, before a byte
        is forwarded (the client sees a reset or EOF during its handshake).
        For ``ECONNREFUSED`` itself, use a port nothing listens on.
    ``silent``
        Bytes are read but not forwarded while it is set; they are held and
        delivered in order when it is cleared (a stall, as a partition that
        heals). Nothing is closed: the client sees a peer that never answers,
        so only its own timeouts end the wait. ``cut_all()`` discards them.
    ``delay_ms`` (or ``delay_to_server_ms`` / ``delay_to_client_ms``)
        Every chunk is delivered that long after it was read, order kept, so a
        request/response round trip costs twice ``delay_ms`` more.
    ``drop_response(after_bytes, trigger=None, times=1)``
        Arms a one-shot (``times``) fault: the next client message (containing
        ``trigger``, when given) marks its connection; after ``after_bytes``
        bytes of the server's answer have been forwarded the connection is
        reset. ``trigger=b"COMMIT"`` with ``after_bytes=0`` is the ambiguous
        commit: the server received COMMIT, the client never hears back.

Counters
    :meth:`FaultProxy.stats` gives bytes each way, connections accepted,
    refused and cut, and *round trips*: the number of times a client sent
    data after the server last spoke on that connection (the client's turns
    in the conversation). It counts what crosses the network, whatever the
    driver: a pipelined Parse/Bind/Execute/Sync is one turn, a ``BEGIN`` sent
    before a query is two.

Bounds and safety
    Listens on 127.0.0.1 only, and forwards only to a loopback target
    (``ValueError`` otherwise): a test tool must not become an open relay.
    At most ``max_connections`` at once (more are reset). Every forwarding
    loop ends when either side closes, on ``cut_all()`` and on exit; leaving
    the ``async with`` closes everything and waits at most ``close_timeout_s``
    for the forwarding tasks.

Models: asyncpg ``tests/test_adversity.py`` (a proxy that cuts and stalls),
psycopg ``tests/fix_proxy.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["FaultProxy", "ProxyStats"]

_CHUNK = 65536
_LISTEN_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of :meth:`FaultProxy.stats`."""

    connections_accepted: int
    connections_refused: int
    connections_cut: int
    open_connections: int
    bytes_to_server: int
    bytes_to_client: int
    round_trips: int


@dataclass
class _DropRule:
    after_bytes: int
    trigger: bytes | None
    remaining: int


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's and the server's socket."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    client_reader: asyncio.StreamReader
    server_reader: asyncio.StreamReader
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    server_spoke: bool = True  # the client speaks first: its first send is a turn
    drop_budget: int | None = None
    tail: bytes = b""  # the end of the last client chunk, for triggers across reads
    closed: bool = False

    def reset(self) -> None:
        """Close both sockets with RST, at once (never blocks)."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.server):
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    if writer.transport.is_closing():
        writer.transport.abort()
        return
    try:
        sock = writer.get_extra_info("socket")
    except (OSError, ValueError):  # uvloop, on a socket already closed
        sock = None
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            # linger 0: close sends RST, the peer sees a reset, not EOF
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()


def _require_loopback(host: str, what: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(
            f"FaultProxy {what} must be a loopback address (127.0.0.1, ::1 or "
            f"localhost), got {host!r}: the proxy is a test tool, not a relay"
        )


class FaultProxy:
    """An asyncio TCP proxy to ``host:port`` that injects network faults.

    Use as ``async with FaultProxy(host, port) as proxy:``; connect to
    ``127.0.0.1:proxy.port``. See the module docstring for each fault.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        delay_ms: float = 0.0,
        max_connections: int = 1000,
        close_timeout_s: float = 5.0,
    ) -> None:
        _require_loopback(host, "target")
        if not 0 < port < 65536:
            raise ValueError(f"FaultProxy port must be 1..65535, got {port!r}")
        if max_connections < 1:
            raise ValueError(
                f"FaultProxy max_connections must be >= 1, got {max_connections!r}"
            )
        self.target = (host, port)
        self.delay_to_server_ms = self.delay_to_client_ms = 0.0
        self.delay_ms = delay_ms
        self.refuse_new = False
        self.max_connections = max_connections
        self.close_timeout_s = close_timeout_s
        self._silent = False
        self._speaking = asyncio.Event()
        self._speaking.set()
        self._links: set[_Link] = set()
        self._drop: _DropRule | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._accepted = self._refused = self._cut = 0
        self._to_server = self._to_client = self._turns = 0

    # -- knobs -------------------------------------------------------------

    @property
    def delay_ms(self) -> float:
        """Delay added in each direction (setting it sets both)."""
        return max(self.delay_to_server_ms, self.delay_to_client_ms)

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"FaultProxy delay_ms must be >= 0, got {value!r}")
        self.delay_to_server_ms = self.delay_to_client_ms = float(value)

    @property
    def silent(self) -> bool:
        """While true, nothing is forwarded and nothing is closed."""
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._silent = bool(value)
        if self._silent:
            self._speaking.clear()
        else:
            self._speaking.set()

    @property
    def port(self) -> int:
        """The port the proxy listens on (127.0.0.1), once entered."""
        if self._server is None:
            raise RuntimeError("FaultProxy.port is known inside `async with` only")
        return self._port

    def cut_all(self) -> int:
        """Reset every proxied connection now; returns how many were cut."""
        links = [link for link in self._links if not link.closed]
        for link in links:
            link.reset()
        self._cut += len(links)
        return len(links)

    def drop_response(
        self, after_bytes: int = 0, *, trigger: bytes | None = None, times: int = 1
    ) -> None:
        """Reset the connection after ``after_bytes`` bytes of the answer to
        the next client message (containing ``trigger``, when given); ``times``
        connections in all."""
        if after_bytes < 0 or times < 1:
            raise ValueError(
                "FaultProxy.drop_response needs after_bytes >= 0 and times >= 1, "
                f"got after_bytes={after_bytes!r}, times={times!r}"
            )
        if trigger is not None and not trigger:
            raise ValueError("FaultProxy.drop_response trigger must not be empty")
        self._drop = _DropRule(after_bytes, trigger, times)

    def stats(self) -> ProxyStats:
        """Counters since the proxy started (see the module docstring)."""
        return ProxyStats(
            connections_accepted=self._accepted,
            connections_refused=self._refused,
            connections_cut=self._cut,
            open_connections=sum(1 for link in self._links if not link.closed),
            bytes_to_server=self._to_server,
            bytes_to_client=self._to_client,
            round_trips=self._turns,
        )

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, _LISTEN_HOST, 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, reset every connection, await the forwarding tasks."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.cut_all()
        self._speaking.set()
        tasks = set(self._handlers)
        for link in list(self._links):
            tasks.update(link.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.close_timeout_s)
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), self.close_timeout_s)

    # -- forwarding --------------------------------------------------------

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # asyncio's stream server owns this task and logs it if cancelled:
        # the work runs in a task of ours, which aclose() may cancel.
        task = asyncio.create_task(self._serve(reader, writer))
        self._handlers.add(task)
        try:
            await asyncio.wait({task})
        finally:
            _abort(writer)  # also when cancelled before the link was made
            self._handlers.discard(task)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a forwarding error is not news

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        open_now = sum(1 for link in self._links if not link.closed)
        if self.refuse_new or open_now >= self.max_connections:
            self._refused += 1
            _abort(writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._refused += 1
            _abort(writer)
            return
        self._accepted += 1
        link = _Link(writer, server_writer, reader, server_reader)
        self._links.add(link)
        try:
            link.tasks = [
                asyncio.create_task(self._pump(link, to_server=True)),
                asyncio.create_task(self._pump(link, to_server=False)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.reset()
            for t in link.tasks:
                t.cancel()
            if link.tasks:
                await asyncio.wait(link.tasks, timeout=self.close_timeout_s)
            self._links.discard(link)

    async def _pump(self, link: _Link, *, to_server: bool) -> None:
        """Forward one direction until either side closes (or a fault)."""
        source = link.client_reader if to_server else link.server_reader
        sink = link.server if to_server else link.client
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        writer = asyncio.create_task(self._deliver(link, sink, queue, to_server))
        try:
            while not link.closed:
                try:
                    chunk = await source.read(_CHUNK)
                except OSError:
                    break
                if not chunk:
                    break
                self._observe(link, chunk, to_server)
                delay = (
                    self.delay_to_server_ms if to_server else self.delay_to_client_ms
                )
                queue.put_nowait((time.monotonic() + delay / 1000.0, chunk))
            queue.put_nowait(None)
            await writer
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _observe(self, link: _Link, chunk: bytes, to_server: bool) -> None:
        if not to_server:
            link.server_spoke = True
            return
        if link.server_spoke:
            self._turns += 1
            link.server_spoke = False
        rule = self._drop
        if rule is not None and link.drop_budget is None:
            window = link.tail + chunk
            if rule.trigger is None or rule.trigger in window:
                link.drop_budget = rule.after_bytes
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._drop = None
        if rule is not None and rule.trigger:
            link.tail = (
                chunk[-(len(rule.trigger) - 1) :] if len(rule.trigger) > 1 else b""
            )

    async def _deliver(
        self,
        link: _Link,
        sink: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        to_server: bool,
    ) -> None:
        while not link.closed:
            item = await queue.get()
            if item is None:
                with contextlib.suppress(OSError):
                    if sink.can_write_eof():
                        sink.write_eof()
                return
            due, chunk = item
            wait_s = due - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            await self._speaking.wait()
            if link.closed:
                return
            if not to_server and link.drop_budget is not None:
                chunk = chunk[: link.drop_budget]
                link.drop_budget -= len(chunk)
            if chunk:
                sink.write(chunk)
                if to_server:
                    self._to_server += len(chunk)
                else:
                    self._to_client += len(chunk)
                try:
                    await sink.drain()
                except OSError:
                    link.reset()
                    return
            if not to_server and link.drop_budget == 0:
                self._cut += 1
                link.reset()
                return
