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
- Server-side cursors (``stream()``, ``stream_results=True``, ``yield_per``):
  asyncpg reads them in batches from a suspended portal, and CockroachDB
  refuses any other statement on the connection while one is open ("multiple
  active portals not supported", 0A000) unless the session variable
  ``multiple_active_portals_enabled`` is on; it is off by default in every
  release, exists from v23.1, and CockroachDB's asyncpg guide calls it a
  requirement (tests/crdb_facts/settings.md section 2.1;
  https://github.com/cockroachdb/cockroach/issues/40195). So on CockroachDB
  each server-side cursor is preceded by ``SET multiple_active_portals_enabled
  = on`` (one round trip; the pool's ``RESET ALL`` turns it off again on
  return): :func:`prepare_server_side_cursor`. Below v23.1 a server-side
  cursor is refused with an error that says to read the rows buffered. The
  server still pauses only a read-only ``SELECT`` without subqueries or
  foreign-key checks; for another statement it answers 0A000 "the statement
  for a pausable portal must be a read-only SELECT query with no sub-queries
  or post-queries" (tests/crdb_facts/errors_batch3.json
  ``0A000_multiple_active_portals``): read such results buffered.
- VECTOR: each connection gets a codec for the ``vector`` type the first time a
  statement uses it, from asyncpg's own type lookup (no query of its own, nothing
  per checkout; binary where the server reads it, text on CockroachDB below
  v25.4): :mod:`._vector_codec`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc
from sqlalchemy.dialects.postgresql.asyncpg import (
    PGDialect_asyncpg,
    PGExecutionContext_asyncpg,
)
from sqlalchemy.util import await_only
from typing_extensions import override

from ..errors import mark_connect_failure
from ._libpq import asyncpg_connect_kwargs
from ._vector_codec import vector_connection_class
from .base import CockroachDBDialect, refuse_sync_use, without_noop_params

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine.interfaces import ConnectArgsType

__all__ = ["PORTALS_ON_SQL", "CockroachDBDialect_asyncpg", "prepare_server_side_cursor"]


#: The session variable that lets a suspended portal stay open beside other
#: statements; from v23.1.0-beta.2 (tests/crdb_facts/settings.md section 2).
PORTALS_ON_SQL = "SET multiple_active_portals_enabled = on"
_CRDB_PORTALS_SINCE = (23, 1, 0)


def prepare_server_side_cursor(dialect: Any, dbapi_connection: Any) -> None:
    """Before asyncpg opens a server-side cursor: on CockroachDB, allow it to
    stay open beside other statements (see the module docstring)."""
    if not dialect.is_cockroachdb:
        return
    if not dialect.crdb_at_least(*_CRDB_PORTALS_SINCE):
        raise exc.InvalidRequestError(
            f"{dialect.server_info.describe()} cannot keep a server-side cursor "
            "(stream(), stream_results=True, yield_per) open beside other "
            "statements: multiple_active_portals_enabled exists from v23.1. Read "
            "the rows buffered (drop stream_results / yield_per), or upgrade."
        )
    await_only(dbapi_connection.driver_connection.execute(PORTALS_ON_SQL))


class _ExecutionContext(PGExecutionContext_asyncpg):
    @override
    def create_server_side_cursor(self) -> Any:
        prepare_server_side_cursor(self.dialect, self._dbapi_connection)
        return super().create_server_side_cursor()


class CockroachDBDialect_asyncpg(CockroachDBDialect, PGDialect_asyncpg):
    """``cockroachdb+asyncpg://``."""

    driver = "asyncpg"
    supports_statement_cache = True
    execution_ctx_cls = _ExecutionContext

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
        refuse_sync_use(self, cparams)  # before a coroutine exists that nobody awaits
        # outermost, so it also sees types the pool's shared cache answers
        # (pool/_type_cache.py): the per-connection VECTOR codec
        import asyncpg

        base = cparams.get("connection_class", asyncpg.Connection)
        cparams["connection_class"] = vector_connection_class(base)
        try:
            return super().connect(*cargs, **cparams)
        except Exception as error:
            await_only(_let_transport_close())
            dbapi = self.loaded_dbapi
            wrapped = _adapter_error(dbapi, error)
            if wrapped is None:
                wrapped = _network_error(dbapi, error, cparams)
            if wrapped is None and not isinstance(error, dbapi.OperationalError):
                wrapped = _refused_login(dbapi, error)
            if wrapped is None:
                raise
            mark_connect_failure(wrapped)
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

    The server refused the connection with a SQLSTATE (a failed login 28P01 or
    28000, an unknown database 3D000, too many connections 53300, a refused
    startup option, a node shutting down 57P03): that is an
    ``OperationalError``, as libpq (psycopg, psycopg2) reports every failed
    connect. SQLAlchemy 2.1 translates these to the adapter's generic
    ``Error`` (a plain ``DBAPIError``); 2.0 lets asyncpg's own exception
    through; :func:`_refused_login` handles the first, this the second.
    Client-side errors (asyncpg's ``InterfaceError``) keep their class.
    """
    return translate_error(dbapi, error, refused_connect=True)


def translate_error(
    dbapi: Any, error: Exception, *, refused_connect: bool = False
) -> Exception | None:
    """asyncpg's error as the adapter's DB-API class, as SQLAlchemy's adapter
    maps a statement's error (``orig.sqlstate`` kept), or None when it is not
    asyncpg's; ``refused_connect``: a server's refusal is an OperationalError
    (:func:`_adapter_error`)."""
    if isinstance(error, dbapi.Error):
        return None
    mapping = dbapi._asyncpg_error_translate
    for cls in type(error).__mro__:
        if cls in mapping:
            sqlstate = getattr(error, "sqlstate", None)
            kind = (
                dbapi.OperationalError if refused_connect and sqlstate else mapping[cls]
            )
            wrapped: Exception = kind(f"{type(error)}: {error}")
            wrapped.pgcode = wrapped.sqlstate = sqlstate  # type: ignore[attr-defined]
            return wrapped
    return None


def _refused_login(dbapi: Any, error: Exception) -> Exception | None:
    """SQLAlchemy 2.1's translation of a server's refusal, as OperationalError."""
    sqlstate = getattr(error, "sqlstate", None)
    if not isinstance(error, dbapi.Error) or not sqlstate:
        return None
    wrapped: Exception = dbapi.OperationalError(str(error))
    wrapped.pgcode = wrapped.sqlstate = sqlstate  # type: ignore[attr-defined]
    wrapped.detail = getattr(error, "detail", None)  # type: ignore[attr-defined]
    return wrapped


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
    """Let the transport of a refused connection close before the error is raised.

    When the server refuses a connection after the TLS handshake (no client
    certificate, a failed authentication), asyncpg calls ``close()`` on the
    TLS transport and raises at once; the socket closes a few event-loop turns
    later. A caller whose event loop ends first (a test, a script's
    ``asyncio.run``) would leak it (``ResourceWarning: unclosed transport``).
    The TLS contexts the dialect builds (``_libpq.OneWayCloseSSLObject``) do
    not wait for the server's close_notify, so the socket is closed within two
    turns of the loop whatever the server does; these turns are that wait,
    bounded, with no sleeping. (A context asyncpg builds itself, for an
    ``sslmode`` given without certificate files, still waits for the server's
    close; the server closes right after its refusal.)
    """
    for _ in range(_CLOSE_TURNS):
        await asyncio.sleep(0)
