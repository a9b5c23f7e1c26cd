"""sslmode / sslrootcert / sslcert / sslkey / sslpassword against a real TLS server.

The server is a separate embedded PostgreSQL with ``ssl = on`` and a certificate
signed by a throwaway CA; the second half requires client certificates
(``hostssl ... cert``), the way CockroachDB's secure clusters authenticate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async.dialect._libpq import asyncpg_connect_kwargs
from sqlalchemy_crdb_async.testing import EmbeddedPostgres, find_postgres_bindir
from tests.certs import Certs, make_certs

if TYPE_CHECKING:
    from collections.abc import Iterator

IS_SSL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    directory = Path(tempfile.mkdtemp(prefix="crdb-async-certs-"))
    os.chmod(directory, 0o755)
    try:
        made = make_certs(directory)
        for path in directory.iterdir():
            os.chmod(path, 0o644)
        yield made
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _tls_server(certs: Certs, hba: str) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(
        find_postgres_bindir(),
        settings={
            "ssl": "on",
            "ssl_cert_file": f"'{certs.server_cert}'",
            "ssl_key_file": f"'{certs.server_key}'",
            "ssl_ca_file": f"'{certs.ca_cert}'",
        },
        hba=hba,
    )
    if not pg.supports_ssl():
        pytest.skip(f"needs PostgreSQL built with TLS; {pg.bindir} was built without")
    # PostgreSQL refuses a key file others can read, or one it does not own.
    pg_key = certs.server_key
    os.chmod(pg_key, 0o600)
    if os.geteuid() == 0:
        pg.chown(pg_key)
    return pg.start()


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[EmbeddedPostgres]:
    pg = _tls_server(
        certs,
        "host all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    try:
        yield pg
    finally:
        pg.stop()


async def _uses_tls(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return bool((await conn.execute(sa.text(IS_SSL))).scalar())
    finally:
        await engine.dispose()


def _url(pg: EmbeddedPostgres, query: str, host: str = "127.0.0.1") -> str:
    return f"cockroachdb+asyncpg://postgres@{host}:{pg.port}/postgres?{query}"


async def test_verify_full_with_root_cert(
    tls_server: EmbeddedPostgres, certs: Certs
) -> None:
    url = _url(tls_server, f"sslmode=verify-full&sslrootcert={certs.ca_cert}")
    assert await _uses_tls(url) is True


async def test_verify_full_checks_the_host_name(
    tls_server: EmbeddedPostgres, certs: Certs
) -> None:
    # The certificate names localhost and 127.0.0.1; both verify.
    url = _url(
        tls_server, f"sslmode=verify-full&sslrootcert={certs.ca_cert}", "localhost"
    )
    assert await _uses_tls(url) is True


async def test_verify_full_rejects_a_server_from_another_ca(
    tls_server: EmbeddedPostgres, certs: Certs
) -> None:
    url = _url(tls_server, f"sslmode=verify-full&sslrootcert={certs.other_ca_cert}")
    with pytest.raises((DBAPIError, ssl.SSLError)) as info:
        await _uses_tls(url)
    chain: BaseException | None = info.value
    causes = []
    while chain is not None:
        causes.append(chain)
        chain = chain.__cause__ or chain.__context__
    assert any(isinstance(c, ssl.SSLCertVerificationError) for c in causes)


async def test_require_without_root_cert_encrypts_without_verifying(
    tls_server: EmbeddedPostgres,
) -> None:
    assert await _uses_tls(_url(tls_server, "sslmode=require")) is True


async def test_disable_is_plain_text(tls_server: EmbeddedPostgres) -> None:
    assert await _uses_tls(_url(tls_server, "sslmode=disable")) is False


async def test_sslmode_require_against_a_server_without_tls(crdb_server) -> None:
    if crdb_server.embedded is None:
        pytest.skip("needs the embedded PostgreSQL, which runs without TLS")
    url = crdb_server.url.set(query={"sslmode": "require"})
    with pytest.raises((DBAPIError, ConnectionError)):
        await _uses_tls(url.render_as_string(hide_password=False))


async def test_sslmode_prefer_falls_back_to_plain_text(crdb_server) -> None:
    if crdb_server.embedded is None:
        pytest.skip("needs the embedded PostgreSQL, which runs without TLS")
    url = crdb_server.url.set(query={"sslmode": "prefer"})
    assert await _uses_tls(url.render_as_string(hide_password=False)) is False


def test_psycopg_reads_the_same_url(tls_server: EmbeddedPostgres, certs: Certs) -> None:
    url = _url(tls_server, f"sslmode=verify-full&sslrootcert={certs.ca_cert}")
    engine = sa.create_engine(url.replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(IS_SSL)).scalar() is True
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cert_auth_server(certs: Certs) -> Iterator[EmbeddedPostgres]:
    # Client certificates required, as on a secure CockroachDB cluster.
    pg = _tls_server(certs, "hostssl all all 127.0.0.1/32 cert\n")
    try:
        yield pg
    finally:
        pg.stop()


async def test_client_certificate_with_encrypted_key(
    cert_auth_server: EmbeddedPostgres, certs: Certs
) -> None:
    url = _url(
        cert_auth_server,
        f"sslmode=verify-full&sslrootcert={certs.ca_cert}"
        f"&sslcert={certs.client_cert}&sslkey={certs.encrypted_client_key}"
        f"&sslpassword={certs.key_password}",
    )
    assert await _uses_tls(url) is True


async def test_no_client_certificate_is_refused(
    cert_auth_server: EmbeddedPostgres, certs: Certs
) -> None:
    url = _url(cert_auth_server, f"sslmode=verify-full&sslrootcert={certs.ca_cert}")
    with pytest.raises((OperationalError, DBAPIError)) as info:
        await _uses_tls(url)
    assert certs.key_password not in str(info.value)


@pytest.fixture
def silent_tls_peer(certs: Certs) -> Iterator[int]:
    """A real TLS server that completes the handshake, then never reads again.

    It never answers a close_notify and never closes, as a server that is slow
    to end a refused connection looks from the client in the worst case.
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.server_cert, certs.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()
    held: list[ssl.SSLSocket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while not release.is_set():
                raw, _ = listener.accept()
                try:
                    held.append(server_ctx.wrap_socket(raw, server_side=True))
                except OSError:
                    raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        release.set()
        listener.close()
        thread.join(timeout=10)
        for conn in held:
            conn.close()


async def _open_and_close(port: int, ctx: ssl.SSLContext) -> tuple[bool, Any]:
    """Open a TLS connection, close it, let the loop turn 10 times.

    Returns whether the raw socket was closed by then, and the transport.
    """
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
    )
    raw = writer.transport.get_extra_info("socket")
    writer.close()
    for _ in range(10):
        await asyncio.sleep(0)
    return raw.fileno() == -1, writer.transport


async def test_our_tls_context_closes_without_waiting_for_the_server(
    silent_tls_peer: int, certs: Certs
) -> None:
    # The cause of the refused-connect socket leak: a graceful TLS close waits
    # for the server's close_notify. The dialect's contexts do not.
    ours = asyncpg_connect_kwargs(
        {"sslmode": "verify-full", "sslrootcert": str(certs.ca_cert)}
    )["ssl"]
    closed, _ = await _open_and_close(silent_tls_peer, ours)
    assert closed, "the dialect's TLS context left the socket open after close()"

    # Control: a default context still waits for the (silent) server, so the
    # check above can fail.
    default = ssl.create_default_context(cafile=str(certs.ca_cert))
    closed, transport = await _open_and_close(silent_tls_peer, default)
    assert not closed
    transport.abort()
