"""Connection trouble as a user meets it: refused, unanswered, TLS without a CA,
a network error inside a transaction, a server unreachable for a while, a
pooled connection gone silent (``ping_timeout_s``)."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sqlalchemy_crdb_async import (
    AmbiguousCommitError,
    ConnectParameterError,
    PoolSettings,
    RetryPolicy,
    pool_stats,
    run_transaction,
)
from sqlalchemy_crdb_async.retry.classify import ErrorKind, classify
from sqlalchemy_crdb_async.testing import FaultProxy
from tests.pool.support import SETTLE_S, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from sqlalchemy.engine import URL

    from sqlalchemy_crdb_async.retry.stats import RetryEvent


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def proxy(crdb_url: URL) -> AsyncIterator[FaultProxy]:
    assert crdb_url.port is not None
    async with FaultProxy("127.0.0.1", crdb_url.port) as p:
        yield p


def via(url: URL, proxy: FaultProxy) -> URL:
    return url.set(host="127.0.0.1", port=proxy.port)


async def connect_error(url: URL) -> exc.OperationalError:
    """The error a first connect to ``url`` raises (it must raise one)."""
    eng = create_async_engine(url)
    try:
        with pytest.raises(exc.OperationalError) as caught:
            async with eng.connect():
                pass
    finally:
        await eng.dispose()
    return caught.value


async def test_nothing_listening_is_an_operational_error(crdb_url: URL) -> None:
    port = closed_port()
    error = await connect_error(crdb_url.set(host="127.0.0.1", port=port))
    assert f"127.0.0.1:{port}" in str(error)
    assert "refused" in str(error)
    assert isinstance(error.orig.__cause__, ConnectionRefusedError)  # type: ignore[union-attr]


async def test_silent_server_names_connect_timeout(
    crdb_url: URL, proxy: FaultProxy
) -> None:
    proxy.silent = True
    url = via(crdb_url, proxy).update_query_dict({"connect_timeout": "1"})
    message = str(await connect_error(url))
    assert "connect_timeout" in message
    assert f"127.0.0.1:{proxy.port}" in message
    assert "within 1.0 s" in message


def test_verify_full_without_root_cert_names_sslrootcert(
    crdb_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    url = crdb_url.update_query_dict({"sslmode": "verify-full"})
    with pytest.raises(ConnectParameterError, match="sslrootcert=") as caught:
        create_async_engine(url)
    assert "root.crt" in str(caught.value)
    assert "sslrootcert=system" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(errno.ECONNRESET, "reset by peer"),
        TimeoutError(),
        asyncio.TimeoutError(),
        OSError(errno.EHOSTUNREACH, "no route to host"),
        BrokenPipeError(errno.EPIPE, "broken pipe"),
    ],
    ids=repr,
)
def test_network_errors_retry_before_commit_only(error: BaseException) -> None:
    assert classify(error).kind is ErrorKind.RETRY
    assert classify(error, commit_sent=True).kind is ErrorKind.AMBIGUOUS


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError(errno.ENOENT, "no such file"), PermissionError(), ValueError()],
    ids=repr,
)
def test_other_errors_are_not_network_errors(error: BaseException) -> None:
    assert classify(error).kind is ErrorKind.RAISE


@pytest.mark.parametrize(
    "raised",
    [ConnectionResetError, TimeoutError, lambda: OSError(errno.ECONNRESET, "reset")],
    ids=["ConnectionResetError", "TimeoutError", "OSError(ECONNRESET)"],
)
async def test_body_network_error_is_retried(crdb_url: URL, raised: object) -> None:
    eng = create_async_engine(crdb_url)
    attempts = 0

    async def body(conn: AsyncConnection) -> int:
        nonlocal attempts
        attempts += 1
        value = int(await conn.scalar(sa.text("SELECT 7")))
        if attempts == 1:
            raise raised()  # type: ignore[operator]
        return value

    try:
        assert await run_transaction(eng, body, policy=FAST) == 7
    finally:
        await eng.dispose()
    assert attempts == 2


FAST = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=30)


async def test_server_unreachable_for_a_while_is_retried(
    crdb_url: URL, proxy: FaultProxy
) -> None:
    """Cut mid-transaction, then refused for two more attempts, then back."""
    unreachable_attempts = 2

    def heal(event: RetryEvent) -> None:
        if event.attempt > unreachable_attempts:
            proxy.refuse_new = False

    eng = create_async_engine(via(crdb_url, proxy))
    attempts = 0

    async def body(conn: AsyncConnection) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            proxy.refuse_new = True
            proxy.cut_all()
        return int(await conn.scalar(sa.text("SELECT 5")))

    policy = RetryPolicy(
        initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=30, on_retry=heal
    )
    try:
        assert await run_transaction(eng, body, policy=policy) == 5
    finally:
        await eng.dispose()
    assert attempts >= 2
    assert proxy.stats().connections_refused >= unreachable_attempts


async def test_connection_lost_at_commit_is_ambiguous(
    crdb_url: URL, proxy: FaultProxy
) -> None:
    eng = create_async_engine(via(crdb_url, proxy))

    async def body(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("SELECT 1"))
        proxy.drop_response(0, trigger=b"COMMIT")

    try:
        with pytest.raises(AmbiguousCommitError):
            await run_transaction(eng, body, policy=FAST)
    finally:
        await eng.dispose()


async def test_silent_connection_fails_its_ping_and_is_replaced(
    crdb_url: URL, proxy: FaultProxy
) -> None:
    """``ping_timeout_s`` bounds the liveness check of a half-open connection."""
    settings = PoolSettings(pool_size=1, idle_before_ping_s=0.0, ping_timeout_s=0.3)
    eng = create_async_engine(via(crdb_url, proxy), **settings.engine_kwargs())

    async def select_one() -> int:
        async with eng.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT 1")))

    try:
        assert await select_one() == 1
        proxy.silent = True
        checkout = asyncio.create_task(select_one())

        async def ping_failed() -> bool:
            return pool_stats(eng)["connections_lost"] >= 1

        await wait_for(ping_failed, "the ping to time out")
        proxy.silent = False  # the replacement connection's handshake goes through
        assert await asyncio.wait_for(checkout, SETTLE_S) == 1
        assert pool_stats(eng)["pings_sent"] >= 1
    finally:
        await eng.dispose()
    assert proxy.stats().connections_accepted >= 2
