"""The asyncpg dialect, ``cockroachdb+asyncpg://``: this package's primary driver.

Usage::

    from sqlalchemy.ext.asyncio import create_async_engine
    import sqlalchemy_crdb_async  # registers the dialects

    engine = create_async_engine(
        "cockroachdb+asyncpg://root@localhost:26257/defaultdb?sslmode=disable"
    )

``create_async_engine("cockroachdb://...")`` picks this dialect too.

libpq-style URL parameters (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``,
``sslpassword``, ``options``, ``application_name``, ``connect_timeout``) are
translated by :mod:`.libpq`, so a CockroachDB Cloud URL works verbatim. Unknown
parameters are an error, not silently ignored.

Multiple hosts are given as SQLAlchemy spells them for asyncpg:
``?host=node1:26257&host=node2:26257``.

CockroachDB differences handled here:

- JSON: CockroachDB has no separate ``json`` type (``JSON`` is an alias of
  ``JSONB``), so the binary ``json`` codec SQLAlchemy installs is skipped there;
  ``jsonb`` is used for both
  (https://github.com/cockroachdb/cockroach/issues/9990). The server is recognised
  by the ``crdb_version`` parameter it reports at startup, before any query.
- VECTOR: each connection gets a codec for the ``vector`` type the first time a
  statement uses it, from asyncpg's own type lookup (no query of its own, nothing
  per checkout; binary where the server reads it, text on CockroachDB below
  v25.4): :mod:`._vector_codec`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.util import await_only
from typing_extensions import override

from ._libpq import asyncpg_connect_kwargs
from ._vector_codec import vector_connection_class
from .base import CockroachDBDialect, without_noop_params

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine.interfaces import ConnectArgsType

__all__ = ["CockroachDBDialect_asyncpg"]


class CockroachDBDialect_asyncpg(CockroachDBDialect, PGDialect_asyncpg):
    """``cockroachdb+asyncpg://``."""

    driver = "asyncpg"
    supports_statement_cache = True

    @override
    def create_connect_args(self, url: URL) -> ConnectArgsType:
        # SQLAlchemy's asyncpg dialect handles user, host(s), port and database;
        # the remaining query parameters are libpq's, translated for asyncpg
        # (less the older package's no-op ones, see base.py).
        url = without_noop_params(url)
        hosts = {k: v for k, v in url.query.items() if k == "host"}
        args, opts = super().create_connect_args(url.set(query=hosts))
        opts.update(
            asyncpg_connect_kwargs({k: v for k, v in url.query.items() if k != "host"})
        )
        return args, opts

    @override
    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        # outermost, so it also sees types the pool's shared cache answers
        # (pool/_type_cache.py): the per-connection VECTOR codec
        import asyncpg

        base = cparams.get("connection_class", asyncpg.Connection)
        cparams["connection_class"] = vector_connection_class(base)
        try:
            return super().connect(*cargs, **cparams)
        except Exception as error:
            await_only(_let_transport_close())
            wrapped = _adapter_error(self.loaded_dbapi, error)
            if wrapped is None:
                wrapped = _network_error(self.loaded_dbapi, error, cparams)
            if wrapped is None:
                raise
            raise wrapped from error

    @override
    async def setup_asyncpg_json_codec(self, conn: Any) -> None:
        # CockroachDB: JSON is JSONB; no binary "json" codec
        # (https://github.com/cockroachdb/cockroach/issues/9990).
        if announces_cockroachdb(conn._connection):
            return
        await super().setup_asyncpg_json_codec(conn)


def _adapter_error(dbapi: Any, error: Exception) -> Exception | None:
    """asyncpg's error at connect time as the adapter's DB-API error, or None.

    SQLAlchemy 2.1 translates errors raised while connecting (an auth failure, a
    refused startup option) into the adapter's DB-API classes, so they reach
    callers as ``sqlalchemy.exc.DBAPIError`` with ``orig.sqlstate``; 2.0 lets
    asyncpg's own exception through. This gives both versions 2.1's behaviour.
    """
    if isinstance(error, dbapi.Error):
        return None
    mapping = dbapi._asyncpg_error_translate
    for cls in type(error).__mro__:
        if cls in mapping:
            wrapped: Exception = mapping[cls](f"{type(error)}: {error}")
            wrapped.pgcode = wrapped.sqlstate = getattr(error, "sqlstate", None)  # type: ignore[attr-defined]
            return wrapped
    return None


def _network_error(
    dbapi: Any, error: Exception, cparams: dict[str, Any]
) -> Exception | None:
    """A refused, reset or unanswered connect as the adapter's OperationalError.

    asyncpg lets ``ConnectionRefusedError``, ``OSError`` and a bare
    ``TimeoutError`` (empty message, after its 60 s default) through, which
    ``except sqlalchemy.exc.OperationalError`` does not catch. SQLAlchemy wraps
    a DB-API ``OperationalError`` raised here into its own; the message names
    the address and the knob (``connect_timeout``).
    """
    if not isinstance(error, (OSError, TimeoutError)):
        return None
    where = _addresses(cparams)
    if isinstance(error, TimeoutError):
        timeout = cparams.get("timeout", 60)
        message = (
            f"no answer from the server at {where} within {timeout} s while "
            "connecting (is the host reachable, the port right, the server "
            "overloaded?); set the URL parameter connect_timeout=<seconds> to "
            "wait longer or give up sooner"
        )
    elif isinstance(error, ConnectionRefusedError):
        message = (
            f"connection refused by {where}: nothing is listening there (is the "
            "server running, the host and port right?)"
        )
    else:
        detail = str(error) or type(error).__name__
        message = f"could not connect to {where}: {detail}"
    return dbapi.OperationalError(message)  # type: ignore[no-any-return]


def _addresses(cparams: dict[str, Any]) -> str:
    hosts, ports = cparams.get("host"), cparams.get("port")
    if isinstance(hosts, (list, tuple)):
        if not isinstance(ports, (list, tuple)):
            ports = [ports] * len(hosts)
        return ", ".join(f"{h}:{p or 5432}" for h, p in zip(hosts, ports, strict=False))
    return f"{hosts or 'localhost'}:{ports or 5432}"


def announces_cockroachdb(asyncpg_connection: Any) -> bool:
    """True when the server sent the ``crdb_version`` startup parameter.

    CockroachDB reports ``crdb_version`` as a ParameterStatus at startup
    (``crdb_version``, the same string as ``version()``:
    https://www.cockroachlabs.com/docs/v25.2/set-vars); asyncpg itself detects
    CockroachDB this way.
    """
    return hasattr(asyncpg_connection.get_settings(), "crdb_version")


dialect = CockroachDBDialect_asyncpg


#: Event-loop turns a failed connect waits for asyncpg's transport to close.
_CLOSE_TURNS = 10


async def _let_transport_close() -> None:
    """Give asyncpg's transport of a refused connection time to close.

    When the server refuses a connection after the TLS handshake (no client
    certificate, a failed authentication), asyncpg calls ``close()`` on the
    TLS transport and raises at once; the graceful TLS shutdown finishes a few
    event-loop turns later. A caller whose event loop ends first (a test, a
    script's ``asyncio.run``) then leaks the socket (``ResourceWarning:
    unclosed transport``). The server has already closed its side, so a few
    turns of the loop (each polls the socket once) are enough; bounded, no
    sleeping.
    """
    for _ in range(_CLOSE_TURNS):
        await asyncio.sleep(0)
