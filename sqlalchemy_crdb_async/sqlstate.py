"""SQLSTATE codes this package acts on, in one place.

Errors are classified by SQLSTATE, never by message text (messages are
localizable and change between releases). The values are PostgreSQL's
(https://www.postgresql.org/docs/current/errcodes-appendix.html) and the codes
CockroachDB sends (crdb-facts/errors.json, ``pgcodes_seen_in_source``).
"""

from __future__ import annotations

from typing import Final

#: Serialization failure: CockroachDB's transaction retry error (every reason
#: code, crdb-facts/errors.json ``general_rules``) and PostgreSQL's SERIALIZABLE
#: conflict. Retry the whole transaction.
SERIALIZATION_FAILURE: Final = "40001"

#: Deadlock detected (PostgreSQL). The transaction was rolled back; retry it.
DEADLOCK_DETECTED: Final = "40P01"

#: CockroachDB's "result is ambiguous": the COMMIT (or RELEASE SAVEPOINT) may or
#: may not have taken effect (crdb-facts/errors.json ``ambiguous_result_40003``).
STATEMENT_COMPLETION_UNKNOWN: Final = "40003"

#: The server is shutting down or draining and closed this connection
#: (crdb-facts/errors.json ``server_shutdown_57P01``; PostgreSQL's
#: ``pg_terminate_backend``).
ADMIN_SHUTDOWN: Final = "57P01"

#: PostgreSQL crashed and closed every connection.
CRASH_SHUTDOWN: Final = "57P02"

#: The class of connection exceptions (08000, 08003, 08006, ...).
CONNECTION_EXCEPTION_CLASS: Final = "08"

#: Feature not supported. Retryable only for a cached-plan error, recognised by
#: the server routine below, not by the message.
FEATURE_NOT_SUPPORTED: Final = "0A000"

#: The PostgreSQL routine that raises "cached plan must not change result type"
#: (0A000); asyncpg recognises its ``InvalidCachedStatementError`` the same way.
CACHED_PLAN_ROUTINE: Final = "RevalidateCachedQuery"

#: CockroachDB: the transaction committed but its schema change failed
#: (crdb-facts/errors.json ``schema_change_in_transaction_XXA00``). Never retried:
#: the data changes are already committed.
COMMITTED_WITH_SCHEMA_CHANGE_FAILURE: Final = "XXA00"

#: SQLSTATEs after which the transaction is certainly rolled back and can be
#: run again.
RETRYABLE: Final = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})

#: SQLSTATEs (besides class 08) that mean the connection is gone.
CONNECTION_LOST: Final = frozenset({ADMIN_SHUTDOWN, CRASH_SHUTDOWN})


def is_connection_lost(sqlstate: str | None) -> bool:
    """True for class 08 and for 57P01/57P02: the connection is gone."""
    if sqlstate is None:
        return False
    return (
        sqlstate.startswith(CONNECTION_EXCEPTION_CLASS) or sqlstate in CONNECTION_LOST
    )
