"""Every error and warning this package raises, in one place.

Each class subclasses the SQLAlchemy class that existing ``except`` clauses
already catch, so adopting this package never lets an error slip past old
handlers::

    sqlalchemy.exc.SQLAlchemyError
     ├── sqlalchemy.exc.ArgumentError
     │    ├── ConnectParameterError      bad libpq-style URL parameter
     │    └── VectorValueError           not a valid vector for its VECTOR column
     │                                   (also a ValueError; raised before sending,
     │                                   so it reaches callers as the ``orig`` of
     │                                   SQLAlchemy's StatementError)
     │    └── FastPathError              prepared() cannot run this statement or driver
     │         └── PreparedParameterError  a prepared() call's parameters are wrong
     ├── sqlalchemy.exc.InvalidRequestError
     │    ├── DriverModeError            asyncio driver with create_engine(), or a
     │    │                              sync one with create_async_engine()
     │    ├── UnrecognizedServerError    version() is neither CockroachDB nor PostgreSQL
     │    ├── AsOfSystemTimeError        AS OF SYSTEM TIME run inside a transaction
     │    └── UnsupportedServerError     CockroachDB older than the dialect can talk to
     └── sqlalchemy.exc.DBAPIError
          └── sqlalchemy.exc.OperationalError
               └── TransactionRetryError      base of the three below
                    ├── RetriesExhaustedError  a retryable error outlasted the policy
                    │    └── DeadlineExceededError  deadline_s ended the call
                    ├── AmbiguousCommitError   COMMIT may or may not have happened
                    └── ReplayMismatchError    a replay read something different

The retry errors are ``OperationalError`` (a ``DBAPIError``), the class the
driver's own serialization failures and disconnects already arrive as, so
``except DBAPIError`` and ``except OperationalError`` handlers still see them.
They keep the error behind them: ``__cause__`` is set, and ``orig``,
``statement`` and ``params`` are those of that error.

    sqlalchemy.exc.SAWarning
     ├── DialectConflictWarning          another package also registers "cockroachdb"
     ├── IsolationLevelUpgradeWarning    CockroachDB runs a weak level as a stronger one
     └── UnsupportedServerWarning        CockroachDB release outside the support window

Messages never contain a password: parameters are named, values of secrets are
not repeated.

A connect that fails (refused, unanswered, a login the server rejects, no free
connection slot) reaches callers as ``sqlalchemy.exc.OperationalError`` on every
driver, with the server's SQLSTATE in ``orig.sqlstate`` when the server
answered (28P01, 3D000, 53300, ...). The dialects mark the driver's error with
:func:`mark_connect_failure`; :func:`is_connect_failure` reads the mark anywhere
in an error's chain, so the retry helpers and the FastAPI route can tell "could
not open a connection" from "lost one mid-transaction".
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import exc

__all__ = [
    "AmbiguousCommitError",
    "AsOfSystemTimeError",
    "ConnectParameterError",
    "DeadlineExceededError",
    "DialectConflictWarning",
    "DriverModeError",
    "FastPathError",
    "IsolationLevelUpgradeWarning",
    "PreparedParameterError",
    "ReplayMismatchError",
    "RetriesExhaustedError",
    "TransactionRetryError",
    "UnrecognizedServerError",
    "UnsupportedServerError",
    "UnsupportedServerWarning",
    "VectorValueError",
]


class ConnectParameterError(exc.ArgumentError):
    """Raised when a URL query parameter (sslmode, sslrootcert, ...) is invalid."""


class DriverModeError(exc.InvalidRequestError):
    """Raised when an asyncio driver meets ``create_engine()`` (at first
    connect) or a sync driver meets ``create_async_engine()`` (at once)."""


class VectorValueError(exc.ArgumentError, ValueError):
    """Raised for a value that is not a valid vector for its ``VECTOR`` column:
    wrong dimensions, NaN or infinity, a non-number, empty, too long."""


class FastPathError(exc.ArgumentError):
    """Raised when ``prepared()`` cannot run a statement, target or driver."""


class PreparedParameterError(FastPathError):
    """Raised when a prepared statement's parameters are missing or unknown."""


class UnrecognizedServerError(exc.InvalidRequestError):
    """Raised when ``SELECT version()`` is neither CockroachDB's nor PostgreSQL's."""


class AsOfSystemTimeError(exc.InvalidRequestError):
    """Raised when an ``as_of_system_time()`` statement would run in a transaction."""


class UnsupportedServerError(exc.InvalidRequestError):
    """Raised at first connect to a CockroachDB release the dialect cannot serve."""


class UnsupportedServerWarning(exc.SAWarning):
    """Warned at first connect to a CockroachDB release no longer supported."""


class IsolationLevelUpgradeWarning(exc.SAWarning):
    """Warned once per engine and level when CockroachDB runs a requested
    ``READ COMMITTED`` / ``REPEATABLE READ`` transaction at a stronger level."""


class DialectConflictWarning(exc.SAWarning):
    """Warned once when ``sqlalchemy-cockroachdb`` is installed beside this package."""


class TransactionRetryError(exc.OperationalError):
    """Base of the errors raised by the retry helpers (:mod:`.retry`)."""

    # No link to SQLAlchemy's page for OperationalError: this one is ours.
    code = None  # type: ignore[assignment]

    def __init__(self, message: str, error: BaseException | None = None) -> None:
        statement: str | None = None
        params: Any = None
        orig: BaseException | None = None
        invalidated = False
        if isinstance(error, exc.DBAPIError):
            statement, params, orig = error.statement, error.params, error.orig
            invalidated = error.connection_invalidated
        elif error is not None:
            orig = error
        exc.StatementError.__init__(self, message, statement, params, orig)
        self.connection_invalidated = invalidated
        #: The error behind this one (also ``__cause__`` once raised).
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.__class__, self.args[0], self.error), self.__dict__)


def _rebuild(
    cls: type[TransactionRetryError], message: str, error: BaseException | None
) -> TransactionRetryError:
    return cls(message, error)


class RetriesExhaustedError(TransactionRetryError):
    """Raised when retryable errors outlast ``max_attempts`` or ``deadline_s``."""

    def __init__(
        self,
        message: str,
        error: BaseException | None = None,
        attempts: int = 0,
        bound: str | None = None,
    ) -> None:
        super().__init__(message, error)
        #: How many attempts ran.
        self.attempts = attempts
        #: The RetryPolicy field that was hit: ``"deadline_s"`` or
        #: ``"max_attempts"``.
        self.bound = bound

    @property
    def last_error(self) -> BaseException | None:
        """The error of the last attempt."""
        return self.error

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_exhausted,
            (self.__class__, self.args[0], self.error, self.attempts),
            self.__dict__,
        )


def _rebuild_exhausted(
    cls: type[RetriesExhaustedError],
    message: str,
    error: BaseException | None,
    attempts: int,
) -> RetriesExhaustedError:
    return cls(message, error, attempts)


class DeadlineExceededError(RetriesExhaustedError):
    """Raised when ``RetryPolicy.deadline_s`` ended the call; ``bound`` is
    ``"deadline_s"``.

    Every way a retry helper stops at its deadline raises this class: the
    deadline passed while waiting for admission, a retry would have started
    past it, or (``during_attempt``) it passed while an attempt ran, which
    was then cancelled on both sides (the client task, and the server
    statement through the driver's cancel request) and rolled back. The
    message says where the attempt was when the deadline passed.
    """

    def __init__(
        self,
        message: str,
        error: BaseException | None = None,
        attempts: int = 0,
        bound: str | None = "deadline_s",
    ) -> None:
        super().__init__(message, error, attempts, bound)
        #: True when an attempt was running (and was cancelled) at the deadline.
        self.during_attempt = False


class AmbiguousCommitError(TransactionRetryError):
    """Raised when the connection was lost (or 40003 came) after COMMIT was sent."""


class ReplayMismatchError(TransactionRetryError):
    """Raised when a replayed statement's result differs from the recorded one."""


#: Attribute set on a driver error raised while opening a connection.
_CONNECT_FAILURE_MARK = "_sqlalchemy_crdb_async_connect_failure"


def mark_connect_failure(error: BaseException) -> None:
    """Mark ``error`` as raised while opening a connection (the dialects call it)."""
    with contextlib.suppress(AttributeError, TypeError):  # no __dict__
        setattr(error, _CONNECT_FAILURE_MARK, True)


def is_connect_failure(error: BaseException) -> bool:
    """True when ``error``, its ``orig`` or a cause is a marked connect failure."""
    seen = 0
    todo: list[BaseException | None] = [error]
    while todo and seen < 16:
        item = todo.pop()
        if item is None:
            continue
        seen += 1
        if getattr(item, _CONNECT_FAILURE_MARK, False):
            return True
        orig = getattr(item, "orig", None)
        if isinstance(orig, BaseException) and orig is not item:
            todo.append(orig)
        todo.append(item.__cause__)
    return False


for _cls in (
    ConnectParameterError,
    DriverModeError,
    FastPathError,
    PreparedParameterError,
    UnrecognizedServerError,
    AsOfSystemTimeError,
    UnsupportedServerError,
    UnsupportedServerWarning,
    DialectConflictWarning,
    IsolationLevelUpgradeWarning,
    TransactionRetryError,
    RetriesExhaustedError,
    DeadlineExceededError,
    AmbiguousCommitError,
    ReplayMismatchError,
    VectorValueError,
):
    _cls.__module__ = "sqlalchemy_crdb_async"
del _cls
