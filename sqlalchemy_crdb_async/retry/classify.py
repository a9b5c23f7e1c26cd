"""Error classification for transaction retries: what to do with an error.

:func:`classify` reads the SQLSTATE of an exception (SQLAlchemy's wrapped
``DBAPIError``, or the driver's own error) and answers with a
:class:`Classification`:

=====================================  ===========================================
SQLSTATE / condition                   :class:`ErrorKind`
=====================================  ===========================================
40001 serialization failure            ``RETRY`` (reason code parsed for metrics)
40P01 deadlock detected                ``RETRY``
0A000 "cached plan must not change     ``RETRY_AFTER_CACHE_CLEAR`` (a cached plan
result type" (any routine)             went stale after a schema change)
class 08, 57P01, 57P02, or an error    ``RETRY`` when COMMIT was not yet sent,
SQLAlchemy marked as a disconnect, or  ``AMBIGUOUS`` when it was
a network error (below)
a connect that failed (below)          ``RETRY`` with ``connect_failed`` set
58C00 range unavailable, 58C01 failed   ``RETRY`` before COMMIT was sent (the
connection between nodes, 53300 too    transaction is gone, nothing committed;
many connections (CockroachDB's        reason ``RANGE_UNAVAILABLE``, ...),
transient errors)                      ``AMBIGUOUS`` after, like a lost
                                       connection
57014 query canceled, 55P03 lock not   ``RAISE``: a statement or lock timeout
available                              that fired is not a conflict
40003 statement completion unknown     ``AMBIGUOUS``
:class:`.ReplayMismatchError`          ``RETRY`` (re-run the body)
:class:`.AmbiguousCommitError`         ``AMBIGUOUS``
:class:`.RetriesExhaustedError`        ``RAISE`` (giving up is final)
anything else                          ``RAISE`` (propagate unchanged)
=====================================  ===========================================

The message text is read for two things. CockroachDB's retry *reason*
(``RETRY_SERIALIZABLE``, ``RETRY_WRITE_TOO_OLD``, ``ABORT_REASON_*``,
``ReadWithinUncertaintyIntervalError``, ...), which only feeds metrics
(:func:`.retry_stats`). And the stale cached plan: 0A000 is "feature not
supported" for many errors, PostgreSQL and CockroachDB's newest code mark this
one with the routine ``RevalidateCachedQuery``, but most CockroachDB releases
send the name of whichever Go function built the error (cockroach
pkg/sql/plan_opt.go; https://github.com/cockroachdb/cockroach/issues/98070,
https://github.com/cockroachdb/cockroach/pull/164406), so the message, the same
on every release, is the only marker. Since v26.2 the error arrives at Bind
instead of Execute; both happen inside the driver's one execute call, so it
is classified the same way. The pattern is the one CockroachDB itself uses to build
the HINT anchor (tests/crdb_facts/errors.json ``general_rules``; CockroachDB's
https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/pgerror/flatten.go),
plus the error names of messages that carry no code.

A *network error* is a ``ConnectionError`` (reset, refused, aborted, broken
pipe), a ``TimeoutError`` (``asyncio.TimeoutError`` included), or an ``OSError``
whose errno says the network failed (unreachable, timed out, reset, ...),
anywhere in the error's chain: asyncpg and the sockets below it raise these
as they are, without a SQLSTATE, and a connect that fails is one too (the
dialect keeps it as the ``__cause__``). Other ``OSError`` (a missing file) is
not a network error.

A *failed connect* is an error the dialect raised while opening a connection
(:func:`..errors.is_connect_failure`): nothing of the transaction ran. A
refused or unanswered connect is retried like a lost connection
(``connect_failed`` and ``connection_lost`` set), so :func:`.run_transaction`
rides out a node that restarts; the FastAPI route does not retry it (the
client gets 503 at once). A login or database the server refuses (class 28,
3D000) or a full server (53300) stays ``RAISE``: retrying changes nothing.

Where the SQLSTATE is found: ``exc.orig.sqlstate`` (SQLAlchemy's asyncpg adapter
and psycopg 3), ``exc.orig.pgcode`` (psycopg2), or the driver exception in
``__cause__``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import errno
import re
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from .. import sqlstate as codes
from ..errors import is_connect_failure

__all__ = [
    "Classification",
    "ErrorKind",
    "classify",
    "crdb_retry_reason",
    "is_network_error",
    "sqlstate_of",
]


class ErrorKind(enum.Enum):
    """What a retry loop does with an error."""

    #: Roll back, back off, run the transaction again.
    RETRY = "retry"
    #: As RETRY, after clearing the driver's prepared-statement cache.
    RETRY_AFTER_CACHE_CLEAR = "retry_after_cache_clear"
    #: The COMMIT may or may not have happened: raise AmbiguousCommitError, or
    #: retry when the caller said the work is idempotent.
    AMBIGUOUS = "ambiguous"
    #: Not a retry matter: propagate the error unchanged.
    RAISE = "raise"


@dataclass(frozen=True)
class Classification:
    """The verdict on one error; see the module docstring."""

    kind: ErrorKind
    #: The SQLSTATE found, if any.
    sqlstate: str | None = None
    #: CockroachDB's retry reason parsed from the message (metrics only).
    reason: str | None = None
    #: True when the error means the connection is gone.
    connection_lost: bool = False
    #: True when no connection could be opened (nothing of the work ran).
    connect_failed: bool = False
    #: True for CockroachDB's transient 58C00 / 58C01 / 53300.
    transient: bool = False

    @property
    def retryable(self) -> bool:
        """True for RETRY and RETRY_AFTER_CACHE_CLEAR."""
        return self.kind in (ErrorKind.RETRY, ErrorKind.RETRY_AFTER_CACHE_CLEAR)


# CockroachDB's own reason pattern (tests/crdb_facts/errors.json general_rules;
# https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/pgerror/flatten.go):
# "((?:ABORT_|RETRY_)[A-Z_]*|ReadWithinUncertaintyInterval)".
_REASON_CODE = re.compile(r"\b((?:ABORT_REASON|RETRY)_[A-Z_]*[A-Z])")
# Messages that name the error type but carry no reason code
# (tests/crdb_facts/errors.json transaction_retry_errors_40001 real_messages).
_REASON_BY_NAME = (
    ("ReadWithinUncertaintyInterval", "ReadWithinUncertaintyIntervalError"),
    ("WriteTooOldError", "RETRY_WRITE_TOO_OLD"),
    ("transaction deadline exceeded", "RETRY_COMMIT_DEADLINE_EXCEEDED"),
    ("inject_retry_errors_enabled", "inject_retry_errors_enabled"),
    ("crdb_internal.force_retry", "crdb_internal.force_retry"),
)


def crdb_retry_reason(message: str) -> str | None:
    """CockroachDB's retry reason in a 40001 message, for metrics; None if absent."""
    match = _REASON_CODE.search(message)
    if match:
        return match.group(1)
    for needle, reason in _REASON_BY_NAME:
        if needle in message:
            return reason
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """The error, SQLAlchemy's ``orig``, and the driver errors they wrap."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen) or len(seen) > 8:
            continue
        seen.append(item)
        if isinstance(item, sa_exc.DBAPIError) and isinstance(item.orig, BaseException):
            todo.append(item.orig)
        todo.append(item.__cause__)
    return seen


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE carried by ``error`` or the driver error it wraps."""
    found = codes.sqlstates_of(error)
    return found[0] if found else None


def _routine_of(error: BaseException) -> str | None:
    for item in _chain(error):
        routine = getattr(item, "server_source_function", None)  # asyncpg
        if routine is None:
            diag = getattr(item, "diag", None)  # psycopg, psycopg2
            routine = getattr(diag, "source_function", None)
        if isinstance(routine, str):
            return routine
    return None


def _message_of(error: BaseException) -> str:
    chain = _chain(error)
    driver = chain[1] if len(chain) > 1 else chain[0]
    return str(driver.args[0]) if driver.args else str(driver)


def _marked_disconnect(error: BaseException) -> bool:
    return any(
        isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated
        for item in _chain(error)
    )


_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ETIMEDOUT",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENOTCONN",
    )
    if hasattr(errno, name)
)


def is_network_error(error: BaseException) -> bool:
    """True when ``error`` or one it wraps is a network failure (module docstring)."""
    for item in _chain(error):
        if isinstance(item, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
            return True
        if isinstance(item, OSError) and item.errno in _NETWORK_ERRNOS:
            return True
    return False


def classify(
    error: BaseException,
    *,
    commit_sent: bool = False,
    disconnect: bool | None = None,
) -> Classification:
    """Classify ``error``; see the module docstring.

    ``commit_sent`` says whether COMMIT (or RELEASE SAVEPOINT) had been sent when
    the error arrived: a lost connection is then an ambiguous outcome.
    ``disconnect`` overrides the disconnect detection (callers that hold a raw
    driver error pass ``dialect.is_disconnect(...)``).
    """
    from ..errors import (
        AmbiguousCommitError,
        ReplayMismatchError,
        RetriesExhaustedError,
    )

    if isinstance(error, RetriesExhaustedError):
        # Giving up is final: an enclosing helper must not multiply the attempts.
        return Classification(ErrorKind.RAISE, sqlstate_of(error))
    if isinstance(error, ReplayMismatchError):
        return Classification(ErrorKind.RETRY, sqlstate_of(error), "REPLAY_MISMATCH")
    if isinstance(error, AmbiguousCommitError):
        return Classification(ErrorKind.AMBIGUOUS, sqlstate_of(error))
    code = sqlstate_of(error)
    verdict = classify_sqlstate(
        code,
        _message_of(error) if code == codes.SERIALIZATION_FAILURE else "",
        commit_sent=commit_sent,
        disconnect=(
            (_marked_disconnect(error) if disconnect is None else disconnect)
            or is_network_error(error)
        ),
        routine=_routine_of(error) if code == codes.FEATURE_NOT_SUPPORTED else None,
        feature_message=(
            _message_of(error) if code == codes.FEATURE_NOT_SUPPORTED else ""
        ),
    )
    if verdict.connection_lost and is_connect_failure(error):
        return dataclasses.replace(verdict, connect_failed=True)
    return verdict


def classify_sqlstate(
    sqlstate: str | None,
    message: str = "",
    *,
    commit_sent: bool = False,
    disconnect: bool = False,
    routine: str | None = None,
    feature_message: str = "",
) -> Classification:
    """The pure rule behind :func:`classify`, on a SQLSTATE and a message.

    ``message`` is a 40001 message (for the reason), ``feature_message`` a 0A000
    one (for the stale cached plan).
    """
    if disconnect or codes.is_connection_lost(sqlstate):
        kind = ErrorKind.AMBIGUOUS if commit_sent else ErrorKind.RETRY
        return Classification(kind, sqlstate, connection_lost=True)
    if sqlstate in codes.TRANSIENT:
        kind = ErrorKind.AMBIGUOUS if commit_sent else ErrorKind.RETRY
        return Classification(kind, sqlstate, codes.TRANSIENT[sqlstate], transient=True)
    if sqlstate == codes.SERIALIZATION_FAILURE:
        return Classification(ErrorKind.RETRY, sqlstate, crdb_retry_reason(message))
    if sqlstate == codes.DEADLOCK_DETECTED:
        return Classification(ErrorKind.RETRY, sqlstate)
    if sqlstate == codes.STATEMENT_COMPLETION_UNKNOWN:
        return Classification(ErrorKind.AMBIGUOUS, sqlstate)
    if sqlstate == codes.FEATURE_NOT_SUPPORTED and (
        routine == codes.CACHED_PLAN_ROUTINE
        # Message text: most CockroachDB releases give no other marker (above).
        or codes.CACHED_PLAN_MESSAGE in feature_message
    ):
        return Classification(ErrorKind.RETRY_AFTER_CACHE_CLEAR, sqlstate)
    return Classification(ErrorKind.RAISE, sqlstate)
