"""Every error and warning this package raises, in one place.

Each class subclasses the SQLAlchemy class that existing ``except`` clauses
already catch, so adopting this package never lets an error slip past old
handlers::

    sqlalchemy.exc.SQLAlchemyError
     ├── sqlalchemy.exc.ArgumentError
     │    ├── ConnectParameterError      bad libpq-style URL parameter
     │    └── FastPathError              prepared() cannot run this statement or driver
     │         └── PreparedParameterError  a prepared() call's parameters are wrong
     ├── sqlalchemy.exc.InvalidRequestError
     │    ├── UnrecognizedServerError    version() is neither CockroachDB nor PostgreSQL
     │    ├── AsOfSystemTimeError        AS OF SYSTEM TIME run inside a transaction
     │    └── UnsupportedServerError     CockroachDB older than the dialect can talk to
     └── sqlalchemy.exc.DBAPIError
          └── sqlalchemy.exc.OperationalError
               └── TransactionRetryError      base of the three below
                    ├── RetriesExhaustedError  a retryable error outlasted the policy
                    ├── AmbiguousCommitError   COMMIT may or may not have happened
                    └── ReplayMismatchError    a replay read something different

The retry errors are ``OperationalError`` (a ``DBAPIError``), the class the
driver's own serialization failures and disconnects already arrive as, so
``except DBAPIError`` and ``except OperationalError`` handlers still see them.
They keep the error behind them: ``__cause__`` is set, and ``orig``,
``statement`` and ``params`` are those of that error.

    sqlalchemy.exc.SAWarning
     ├── DialectConflictWarning          another package also registers "cockroachdb"
     └── UnsupportedServerWarning        CockroachDB release outside the support window

Messages never contain a password: parameters are named, values of secrets are
not repeated.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc

__all__ = [
    "AmbiguousCommitError",
    "AsOfSystemTimeError",
    "ConnectParameterError",
    "DialectConflictWarning",
    "FastPathError",
    "PreparedParameterError",
    "ReplayMismatchError",
    "RetriesExhaustedError",
    "TransactionRetryError",
    "UnrecognizedServerError",
    "UnsupportedServerError",
    "UnsupportedServerWarning",
]


class ConnectParameterError(exc.ArgumentError):
    """Raised when a URL query parameter (sslmode, sslrootcert, ...) is invalid."""


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
            (self.args[0], self.error, self.attempts),
            self.__dict__,
        )


def _rebuild_exhausted(
    message: str, error: BaseException | None, attempts: int
) -> RetriesExhaustedError:
    return RetriesExhaustedError(message, error, attempts)


class AmbiguousCommitError(TransactionRetryError):
    """Raised when the connection was lost (or 40003 came) after COMMIT was sent."""


class ReplayMismatchError(TransactionRetryError):
    """Raised when a replayed statement's result differs from the recorded one."""


for _cls in (
    ConnectParameterError,
    FastPathError,
    PreparedParameterError,
    UnrecognizedServerError,
    AsOfSystemTimeError,
    UnsupportedServerError,
    UnsupportedServerWarning,
    DialectConflictWarning,
    TransactionRetryError,
    RetriesExhaustedError,
    AmbiguousCommitError,
    ReplayMismatchError,
):
    _cls.__module__ = "sqlalchemy_crdb_async"
del _cls
