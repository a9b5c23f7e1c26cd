"""SQLSTATE codes this package acts on, and how to read them from any error.

Errors are classified by SQLSTATE, never by message text (messages are
localizable and change between versions). The constants live here, in one
place; see https://www.postgresql.org/docs/current/errcodes-appendix.html and
https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/pgcode/codes.go
for the codes CockroachDB sends (listed in tests/crdb_facts/errors.json,
``pgcodes_seen_in_source``).

:func:`sqlstates_of` reads the codes of an exception *and of its causes*:
asyncpg reports a server that closed the connection right after a FATAL error
as ``ConnectionDoesNotExistError`` (08003) whose ``__cause__`` is the server's
own error, e.g. ``AdminShutdownError`` (57P01); SQLAlchemy wraps that again.
Drivers spell the attribute differently (asyncpg and psycopg ``sqlstate``,
psycopg2 ``pgcode``, SQLAlchemy's asyncpg adapter both); all are read.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADMIN_SHUTDOWN",
    "CACHED_PLAN_MESSAGE",
    "CACHED_PLAN_ROUTINE",
    "CANNOT_CONNECT_NOW",
    "COMMITTED_WITH_SCHEMA_CHANGE_FAILURE",
    "CONNECTION_EXCEPTION_CLASS",
    "CRASH_SHUTDOWN",
    "DATA_EXCEPTION_CLASS",
    "DEADLOCK_DETECTED",
    "FEATURE_NOT_SUPPORTED",
    "INSUFFICIENT_RESOURCES_CLASS",
    "INTEGRITY_CONSTRAINT_VIOLATION_CLASS",
    "INTERNAL_CONNECTION_FAILURE",
    "LOCK_NOT_AVAILABLE",
    "QUERY_CANCELED",
    "RANGE_UNAVAILABLE",
    "RETRYABLE",
    "SERIALIZATION_FAILURE",
    "SERVER_SHUTDOWN_CODES",
    "STATEMENT_COMPLETION_UNKNOWN",
    "TOO_MANY_CONNECTIONS",
    "TRANSIENT",
    "is_connection_lost",
    "is_server_shutdown",
    "sqlstates_of",
]

# -- the server is going away -----------------------------------------------

#: 57P01 admin_shutdown: PostgreSQL's pg_terminate_backend / smart shutdown;
#: CockroachDB's "server is shutting down" to connections of a draining node
#: (tests/crdb_facts/errors.json ``server_shutdown_57P01``, from
#: https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/server.go).
ADMIN_SHUTDOWN: Final = "57P01"
#: 57P02 crash_shutdown: another backend crashed, the server restarts.
CRASH_SHUTDOWN: Final = "57P02"
#: 57P03 cannot_connect_now: the server is starting up or shutting down.
CANNOT_CONNECT_NOW: Final = "57P03"
#: The server says it is going away: connections to it should be dropped.
SERVER_SHUTDOWN_CODES: Final = frozenset(
    {ADMIN_SHUTDOWN, CRASH_SHUTDOWN, CANNOT_CONNECT_NOW}
)
#: The class of connection exceptions (08000, 08003, 08006, ...).
CONNECTION_EXCEPTION_CLASS: Final = "08"

# -- transaction retries (retry.py, replay.py) ------------------------------

#: Serialization failure: CockroachDB's transaction retry error (every reason
#: code, https://www.cockroachlabs.com/docs/v25.2/transaction-retry-error-reference)
#: and PostgreSQL's SERIALIZABLE conflict. Retry the whole transaction.
SERIALIZATION_FAILURE: Final = "40001"
#: Deadlock detected (PostgreSQL). The transaction was rolled back; retry it.
DEADLOCK_DETECTED: Final = "40P01"
#: CockroachDB's "result is ambiguous": the COMMIT (or RELEASE SAVEPOINT) may or
#: may not have taken effect (tests/crdb_facts/errors.json
#: ``ambiguous_result_40003``; https://www.cockroachlabs.com/docs/v24.3/common-errors).
STATEMENT_COMPLETION_UNKNOWN: Final = "40003"
#: Feature not supported. Retryable only for a cached-plan error, recognised by
#: the server routine below, not by the message.
FEATURE_NOT_SUPPORTED: Final = "0A000"
#: The PostgreSQL routine that raises "cached plan must not change result type"
#: (0A000); asyncpg recognises its ``InvalidCachedStatementError`` the same way.
#: CockroachDB sends it on purpose only in its newest code; older releases send
#: the name of their own Go function (cockroach pkg/sql/plan_opt.go, issues
#: https://github.com/cockroachdb/cockroach/issues/98070 and pull 164406).
CACHED_PLAN_ROUTINE: Final = "RevalidateCachedQuery"
#: The message of that error, the same text on PostgreSQL and on every
#: CockroachDB release (tests/crdb_facts/errors_more.json ``cached_plan``).
CACHED_PLAN_MESSAGE: Final = "cached plan must not change result type"
#: CockroachDB: the transaction committed but its schema change failed
#: (https://github.com/cockroachdb/cockroach/issues/42061;
#: tests/crdb_facts/errors.json ``schema_change_in_transaction_XXA00``). Never
#: retried: the data changes are already committed.
COMMITTED_WITH_SCHEMA_CHANGE_FAILURE: Final = "XXA00"
#: SQLSTATEs after which the transaction is certainly rolled back and can be
#: run again.
RETRYABLE: Final = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})

# -- transient CockroachDB errors (retry/classify.py) -------------------------
# Codes, texts and CockroachDB's own treatment: tests/crdb_facts/errors_batch3.json
# (from https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/pgcode/codes.go).

#: 58C00 range unavailable: some data cannot be reached for now ("key range
#: id:<n> is unavailable").
RANGE_UNAVAILABLE: Final = "58C00"
#: 58C01 a connection between CockroachDB's own nodes failed inside a query.
INTERNAL_CONNECTION_FAILURE: Final = "58C01"
#: 53300 too many connections ("sorry, too many clients already"), sent at
#: connect when ``server.max_connections_per_gateway`` is reached.
TOO_MANY_CONNECTIONS: Final = "53300"
#: The transient errors, by the reason name ``retry_stats()`` counts them under.
TRANSIENT: Final = {
    RANGE_UNAVAILABLE: "RANGE_UNAVAILABLE",
    INTERNAL_CONNECTION_FAILURE: "INTERNAL_CONNECTION_FAILURE",
    TOO_MANY_CONNECTIONS: "TOO_MANY_CONNECTIONS",
}
#: 57014 query canceled (a statement or transaction timeout, a cancel request)
#: and 55P03 lock not available (lock_timeout, NOWAIT): never retried as a
#: conflict (tests/crdb_facts/errors_batch3.json ``57014_query_canceled``).
QUERY_CANCELED: Final = "57014"
LOCK_NOT_AVAILABLE: Final = "55P03"

# -- what an HTTP answer is made of (fastapi/) --------------------------------

#: Class 23, integrity constraint violation (23505 unique, 23503 foreign key,
#: 23514 check): the request conflicts with the data (HTTP 409).
INTEGRITY_CONSTRAINT_VIOLATION_CLASS: Final = "23"
#: Class 22, data exception (22003 numeric value out of range, ...): the data
#: cannot be stored as asked (HTTP 422).
DATA_EXCEPTION_CLASS: Final = "22"
#: Class 53, insufficient resources (53300 too many connections, ...): the
#: server cannot take the work now (HTTP 503).
INSUFFICIENT_RESOURCES_CLASS: Final = "53"

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


def is_connection_lost(sqlstate: str | None) -> bool:
    """True for class 08 and for 57P01/57P02/57P03: the connection is gone."""
    if sqlstate is None:
        return False
    return (
        sqlstate.startswith(CONNECTION_EXCEPTION_CLASS)
        or sqlstate in SERVER_SHUTDOWN_CODES
    )
