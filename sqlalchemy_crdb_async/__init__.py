"""sqlalchemy-crdb-async: an asyncio-first CockroachDB dialect for SQLAlchemy 2.x.

Importing this package registers its dialects with SQLAlchemy, explicitly, so
they win over any other installed package that registers the same names
through entry points (such as ``sqlalchemy-cockroachdb``; when that package is
installed too, one :class:`DialectConflictWarning` says which one is active)::

    import sqlalchemy_crdb_async
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("cockroachdb+asyncpg://root@localhost:26257/defaultdb")

=============================  ==================================================
URL scheme                     dialect
=============================  ==================================================
``cockroachdb+asyncpg://``     :class:`CockroachDBDialect_asyncpg` (primary)
``cockroachdb+psycopg://``     :class:`CockroachDBDialect_psycopg`; async with
                               ``create_async_engine``
``cockroachdb+psycopg_async``  :class:`CockroachDBDialectAsync_psycopg`
``cockroachdb+psycopg2://``    :class:`CockroachDBDialect_psycopg2`
``cockroachdb://``             psycopg2 with ``create_engine`` (as the older
                               package had it); asyncpg with
                               ``create_async_engine``
=============================  ==================================================

What else is here, and where it lives:

- transaction retries: :func:`run_transaction`, :func:`retrying`,
  :func:`retrying_session`, :class:`RetryPolicy`, :func:`retry_stats`
  (``retry.py``, ``replay.py``, ``policy.py``, ``classify.py``, ``observe.py``;
  the sync API in :mod:`sqlalchemy_crdb_async.sync`);
- pool tuning: :class:`PoolSettings`, :class:`CockroachPool`, :func:`pool_stats`
  (``pool.py``, ``pool_impl.py``, ``pool_session.py``, ``pool_events.py``);
- CockroachDB SQL: :func:`upsert`, :func:`as_of_system_time`, :func:`index_hint`,
  ... (``sql.py``); types, DDL and reflection (``types.py``, ``compiler.py``,
  ``reflection.py``); Alembic (``alembic.py``, registered when Alembic is
  installed);
- server detection: :class:`ServerInfo`, :func:`parse_server_version`
  (``server.py``, ``base.py``);
- the pytest plugin and test servers: :mod:`sqlalchemy_crdb_async.testing`.

Every error is in ``errors.py``, with the class tree drawn at its top.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings

from sqlalchemy.dialects import registry as _registry

from .base import CockroachDBDialect
from .classify import Classification, ErrorKind, classify
from .errors import (
    AmbiguousCommitError,
    ConnectParameterError,
    DialectConflictWarning,
    ReplayMismatchError,
    RetriesExhaustedError,
    TransactionRetryError,
    UnrecognizedServerError,
)
from .observe import RetryEvent, RetryStats, retry_stats
from .policy import RetryPolicy
from .pool import PoolSettings, PoolStats, pool_stats
from .pool_impl import CockroachPool
from .replay import retrying_session
from .retry import Attempt, retrying, run_transaction
from .server import ServerInfo, parse_server_version
from .sql import (
    Upsert,
    as_of_system_time,
    follower_read_timestamp,
    index_hint,
    timestampdiff,
    unique_rowid,
    upsert,
    uuid_primary_key,
    with_max_staleness,
)

__version__ = "0.1.0"

__all__ = [
    "AmbiguousCommitError",
    "Attempt",
    "Classification",
    "CockroachDBDialect",
    "CockroachPool",
    "ConnectParameterError",
    "DialectConflictWarning",
    "ErrorKind",
    "PoolSettings",
    "PoolStats",
    "ReplayMismatchError",
    "RetriesExhaustedError",
    "RetryEvent",
    "RetryPolicy",
    "RetryStats",
    "ServerInfo",
    "TransactionRetryError",
    "UnrecognizedServerError",
    "Upsert",
    "__version__",
    "as_of_system_time",
    "classify",
    "follower_read_timestamp",
    "index_hint",
    "parse_server_version",
    "pool_stats",
    "retry_stats",
    "retrying",
    "retrying_session",
    "run_transaction",
    "timestampdiff",
    "unique_rowid",
    "upsert",
    "uuid_primary_key",
    "with_max_staleness",
]

#: (name SQLAlchemy looks up, module, class) for every scheme this package serves.
DIALECTS = (
    ("cockroachdb", "sqlalchemy_crdb_async.psycopg2", "CockroachDBDialect_psycopg2"),
    (
        "cockroachdb.psycopg2",
        "sqlalchemy_crdb_async.psycopg2",
        "CockroachDBDialect_psycopg2",
    ),
    (
        "cockroachdb.asyncpg",
        "sqlalchemy_crdb_async.asyncpg",
        "CockroachDBDialect_asyncpg",
    ),
    (
        "cockroachdb.psycopg",
        "sqlalchemy_crdb_async.psycopg",
        "CockroachDBDialect_psycopg",
    ),
    (
        "cockroachdb.psycopg_async",
        "sqlalchemy_crdb_async.psycopg",
        "CockroachDBDialectAsync_psycopg",
    ),
)


def _register() -> None:
    for name, module, cls in DIALECTS:
        _registry.register(name, module, cls)


def _warn_if_other_dialect_installed() -> None:
    try:
        other = importlib.metadata.version("sqlalchemy-cockroachdb")
    except importlib.metadata.PackageNotFoundError:
        return
    warnings.warn(
        f"sqlalchemy-cockroachdb {other} is installed too and registers the same "
        "'cockroachdb' URL schemes; sqlalchemy-crdb-async is the active dialect "
        "because it was imported. Uninstall sqlalchemy-cockroachdb to silence this.",
        DialectConflictWarning,
        stacklevel=3,
    )


def _register_alembic() -> None:
    # Alembic finds implementations by dialect name once their class exists.
    if importlib.util.find_spec("alembic") is not None:
        from . import alembic  # noqa: F401 - registers CockroachDBImpl


_register()
_register_alembic()
_warn_if_other_dialect_installed()
