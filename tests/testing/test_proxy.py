"""FaultProxy: each fault, seen by a client, against a local echo server and
against the test database through asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import asyncpg
import pytest

from sqlalchemy_crdb_async.testing import FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Echo(asyncio.Protocol):
    """Answers every chunk with the chunk repeated ten times."""

    def __init__(self, open_transports: set[asyncio.BaseTransport]) -> None:
        self.open = open_transports
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open.add(transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data * 10)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open.discard(self.transport)  # type: ignore[arg-type]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A local server that answers every chunk with it repeated ten times."""
    transports: set[asyncio.BaseTransport] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Echo(transports), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in list(transports):
            t.abort()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def client(port: int) -> AsyncIterator[Streams]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the peer sends until it closes or resets the connection."""
    got = b""
    for _ in range(1000):
        try:
            chunk = await asyncio.wait_for(reader.read(4096), 10)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
    raise AssertionError("the connection never closed")


async def test_forwards_and_counts_round_trips(echo_port: int) -> None:
    async with (
        FaultProxy("127.0.0.1", echo_port) as proxy,
        client(proxy.port) as (
            r,
            w,
        ),
    ):
        for word in (b"ab", b"cd"):
            w.write(word)
            assert await r.readexactly(20) == word * 10
        stats = proxy.stats()
    assert stats.round_trips == 2
    assert stats.bytes_to_server == 4
    assert stats.bytes_to_client == 40
    assert stats.connections_accepted == 1


@pytest.mark.parametrize(
    ("host", "kwargs"),
    [
        ("10.1.2.3", {}),
        ("db.example.com", {}),
        ("127.0.0.1", {"max_connections": 0}),
    ],
)
def test_refuses_non_loopback_and_bad_settings(
    host: str, kwargs: dict[str, int]
) -> None:
    with pytest.raises(ValueError, match="FaultProxy"):
        FaultProxy(host, 5432, **kwargs)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_delay_must_be_non_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="delay_ms must be >= 0"):
        FaultProxy("127.0.0.1", 5432, delay_ms=bad)


async def test_delay_applies_each_way(echo_port: int) -> None:
    async with (
        FaultProxy("127.0.0.1", echo_port, delay_ms=40) as proxy,
        client(proxy.port) as (r, w),
    ):
        started = time.monotonic()
        w.write(b"x")
        assert await r.readexactly(10) == b"x" * 10
        elapsed = time.monotonic() - started
    # a chunk is never delivered before its due time: a lower bound by construction
    assert elapsed >= 0.08


@pytest.mark.parametrize("direction", ["delay_to_server_ms", "delay_to_client_ms"])
async def test_delay_one_direction(echo_port: int, direction: str) -> None:
    async with (
        FaultProxy("127.0.0.1", echo_port) as proxy,
        client(proxy.port) as (
            r,
            w,
        ),
    ):
        setattr(proxy, direction, 60.0)
        assert proxy.delay_ms == 60.0
        started = time.monotonic()
        w.write(b"y")
        assert await r.readexactly(10) == b"y" * 10
        assert time.monotonic() - started >= 0.06  # lower bound by construction


async def test_cut_all_resets_every_connection(echo_port: int) -> None:
    async with FaultProxy("127.0.0.1", echo_port) as proxy:
        async with client(proxy.port) as (r1, w1), client(proxy.port) as (r2, w2):
            for r, w in ((r1, w1), (r2, w2)):
                w.write(b"a")
                await r.readexactly(10)
            assert proxy.cut_all() == 2
            assert await read_until_closed(r1) == b""
            assert await read_until_closed(r2) == b""
        # and new connections work again
        async with client(proxy.port) as (r, w):
            w.write(b"b")
            assert await r.readexactly(10) == b"b" * 10
        assert proxy.stats().connections_cut == 2


async def test_refuse_new(echo_port: int) -> None:
    async with FaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.refuse_new = True
        async with client(proxy.port) as (r, w):
            w.write(b"a")
            assert await read_until_closed(r) == b""
        proxy.refuse_new = False
        async with client(proxy.port) as (r, w):
            w.write(b"a")
            assert await r.readexactly(10) == b"a" * 10
        assert proxy.stats().connections_refused == 1


async def test_silent_holds_everything_and_closes_nothing(echo_port: int) -> None:
    async with (
        FaultProxy("127.0.0.1", echo_port) as proxy,
        client(proxy.port) as (
            r,
            w,
        ),
    ):
        proxy.silent = True
        w.write(b"q")
        # nothing can arrive while silent: the wait can only time out
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.readexactly(1), 0.2)
        assert proxy.stats().open_connections == 1
        proxy.silent = False
        assert await r.readexactly(10) == b"q" * 10


async def test_drop_response_after_n_bytes(echo_port: int) -> None:
    async with (
        FaultProxy("127.0.0.1", echo_port) as proxy,
        client(proxy.port) as (
            r,
            w,
        ),
    ):
        proxy.drop_response(after_bytes=7)
        w.write(b"abc")  # the answer would be 30 bytes
        assert await read_until_closed(r) == (b"abc" * 10)[:7]


async def test_drop_response_on_trigger_only(echo_port: int) -> None:
    async with (
        FaultProxy("127.0.0.1", echo_port) as proxy,
        client(proxy.port) as (
            r,
            w,
        ),
    ):
        proxy.drop_response(0, trigger=b"COMMIT")
        w.write(b"SELECT")
        assert await r.readexactly(60) == b"SELECT" * 10
        w.write(b"COMMIT")
        assert await read_until_closed(r) == b""


def test_drop_response_validates() -> None:
    proxy = FaultProxy("127.0.0.1", 5432)
    with pytest.raises(ValueError, match="after_bytes >= 0"):
        proxy.drop_response(-1)
    with pytest.raises(ValueError, match="trigger must not be empty"):
        proxy.drop_response(0, trigger=b"")


def test_port_only_inside_async_with() -> None:
    with pytest.raises(RuntimeError, match="inside `async with`"):
        _ = FaultProxy("127.0.0.1", 5432).port


async def test_max_connections(echo_port: int) -> None:
    async with FaultProxy("127.0.0.1", echo_port, max_connections=1) as proxy:
        async with client(proxy.port) as (r1, w1):
            w1.write(b"a")
            await r1.readexactly(10)
            async with client(proxy.port) as (r2, w2):
                w2.write(b"a")
                assert await read_until_closed(r2) == b""
        assert proxy.stats().connections_refused == 1


async def test_exit_closes_open_connections(echo_port: int) -> None:
    async with client(echo_port):
        pass
    proxy = FaultProxy("127.0.0.1", echo_port)
    async with proxy, client(proxy.port) as (r, w):
        w.write(b"a")
        await r.readexactly(10)
        await proxy.aclose()
        assert await read_until_closed(r) == b""
    assert proxy.stats().open_connections == 0


async def test_asyncpg_through_the_proxy(crdb_url: URL) -> None:
    assert crdb_url.port is not None
    async with FaultProxy("127.0.0.1", crdb_url.port) as proxy:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=crdb_url.username,
            password=crdb_url.password,
            database=crdb_url.database,
            ssl=False,
        )
        try:
            before = proxy.stats().round_trips
            assert await conn.fetchval("SELECT 41 + 1") == 42
            # an unprepared fetch: Parse/Describe/Sync, then Bind/Execute/Sync
            assert proxy.stats().round_trips - before == 2
            proxy.silent = True
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT 1", timeout=0.2)
            proxy.silent = False
            proxy.cut_all()
            with pytest.raises((ConnectionError, asyncpg.InterfaceError)):
                await conn.fetchval("SELECT 1")
        finally:
            await conn.close(timeout=2)
