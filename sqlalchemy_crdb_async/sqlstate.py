"""SQLSTATE codes this package acts on, and how to read them from any error.

Errors are classified by SQLSTATE, never by message text (messages are
localizable and change between versions). The constants live here, in one
place; see https://www.postgresql.org/docs/current/errcodes-appendix.html and
crdb-facts/errors.json for the codes CockroachDB sends.

:func:`sqlstates_of` reads the codes of an exception *and of its causes*:
asyncpg reports a server that closed the connection right after a FATAL error
as ``ConnectionDoesNotExistError`` (08003) whose ``__cause__`` is the server's
own error, e.g. ``AdminShutdownError`` (57P01); SQLAlchemy wraps that again.
Drivers spell the attribute differently (asyncpg and psycopg ``sqlstate``,
psycopg2 ``pgcode``, SQLAlchemy's asyncpg adapter both); all are read.
"""

from __future__ import annotations

__all__ = [
    "ADMIN_SHUTDOWN",
    "CANNOT_CONNECT_NOW",
    "CRASH_SHUTDOWN",
    "SERVER_SHUTDOWN_CODES",
    "is_server_shutdown",
    "sqlstates_of",
]

#: 57P01 admin_shutdown: PostgreSQL's pg_terminate_backend / smart shutdown;
#: CockroachDB's "server is shutting down" to connections of a draining node
#: (crdb-facts/errors.json, ``server_shutdown_57P01``).
ADMIN_SHUTDOWN = "57P01"
#: 57P02 crash_shutdown: another backend crashed, the server restarts.
CRASH_SHUTDOWN = "57P02"
#: 57P03 cannot_connect_now: the server is starting up or shutting down.
CANNOT_CONNECT_NOW = "57P03"
#: The server says it is going away: connections to it should be dropped.
SERVER_SHUTDOWN_CODES = frozenset({ADMIN_SHUTDOWN, CRASH_SHUTDOWN, CANNOT_CONNECT_NOW})

_MAX_CHAIN = 8


def sqlstates_of(exc: BaseException | None) -> list[str]:
    """Every SQLSTATE found on ``exc``, its ``orig`` and its causes, outermost first."""
    found: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException] = [exc] if exc is not None else []
    while todo and len(seen) < _MAX_CHAIN:
        err = todo.pop(0)
        if id(err) in seen:
            continue
        seen.add(id(err))
        for attr in ("sqlstate", "pgcode"):
            code = getattr(err, attr, None)
            if isinstance(code, str) and code and code not in found:
                found.append(code)
        for nxt in (getattr(err, "orig", None), err.__cause__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return found


def is_server_shutdown(exc: BaseException | None) -> bool:
    """True when ``exc`` (or a cause) carries one of :data:`SERVER_SHUTDOWN_CODES`."""
    return bool(SERVER_SHUTDOWN_CODES.intersection(sqlstates_of(exc)))
