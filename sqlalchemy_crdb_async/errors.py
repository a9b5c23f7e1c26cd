"""Every error and warning this package raises, in one place.

Each class subclasses the SQLAlchemy class that existing ``except`` clauses
already catch, so adopting this package never lets an error slip past old
handlers::

    sqlalchemy.exc.SQLAlchemyError
     ├── sqlalchemy.exc.ArgumentError
     │    └── ConnectParameterError      bad libpq-style URL parameter
     └── sqlalchemy.exc.InvalidRequestError
          └── UnrecognizedServerError    version() is neither CockroachDB nor PostgreSQL

    sqlalchemy.exc.SAWarning
     └── DialectConflictWarning          another package also registers "cockroachdb"

Messages never contain a password: parameters are named, values of secrets are
not repeated.
"""

from __future__ import annotations

from sqlalchemy import exc

__all__ = [
    "ConnectParameterError",
    "DialectConflictWarning",
    "UnrecognizedServerError",
]


class ConnectParameterError(exc.ArgumentError):
    """Raised when a URL query parameter (sslmode, sslrootcert, ...) is invalid."""


class UnrecognizedServerError(exc.InvalidRequestError):
    """Raised when ``SELECT version()`` is neither CockroachDB's nor PostgreSQL's."""


class DialectConflictWarning(exc.SAWarning):
    """Warned once when ``sqlalchemy-cockroachdb`` is installed beside this package."""


for _cls in (ConnectParameterError, UnrecognizedServerError, DialectConflictWarning):
    _cls.__module__ = "sqlalchemy_crdb_async"
del _cls
