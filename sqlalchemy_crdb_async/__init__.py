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

What else is here, and where it lives (one folder per subsystem):

=======================  =======================================================
where                    what
=======================  =======================================================
``dialect/``             the dialects (``base``, one module per driver),
                         server detection (``server``), DDL and SQL compilers
                         (``compiler``), types, reflection, CockroachDB
                         SQL (``constructs``: :func:`as_of_system_time`,
                         :func:`index_hint`; ``dml``: :func:`upsert`;
                         ``functions``: :func:`timestampdiff`, ...;
                         ``vector``: :class:`VECTOR`, distances),
                         Alembic, and SQLAlchemy's test-suite hooks
                         (``provision``, ``requirements``)
``retry/``               transaction retries: :func:`run_transaction`,
                         :func:`retrying`, :func:`retrying_session`,
                         :func:`claim_keys`,
                         :class:`RetryPolicy`, :func:`retry_stats`; the sync API
                         is :mod:`sqlalchemy_crdb_async.sync`
``pool/``                pool tuning: :class:`PoolSettings`,
                         :class:`CockroachPool`, :func:`pool_stats`
``fastpath/``            :func:`prepared`: Core statements as driver
                         prepared statements, one round trip per read
``testing/``             the pytest plugin and the test servers
``errors.py``            every error, with the class tree drawn at its top
``sqlstate.py``          the SQLSTATE codes this package acts on
=======================  =======================================================

"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings

from sqlalchemy.dialects import registry as _registry

from .dialect.base import CockroachDBDialect
from .dialect.constructs import (
    as_of_system_time,
    follower_read_timestamp,
    index_hint,
    set_transaction_as_of_system_time,
    with_max_staleness,
)
from .dialect.dml import Upsert, upsert
from .dialect.functions import timestampdiff, unique_rowid, uuid_primary_key
from .dialect.server import ServerInfo, parse_server_version
from .dialect.vector import (
    VECTOR,
    set_vector_search_beam,
    vector_dims,
    vector_norm,
)
from .errors import (
    AmbiguousCommitError,
    AsOfSystemTimeError,
    ConnectParameterError,
    DeadlineExceededError,
    DialectConflictWarning,
    DriverModeError,
    FastPathError,
    IsolationLevelUpgradeWarning,
    PreparedParameterError,
    ReplayMismatchError,
    RetriesExhaustedError,
    TransactionRetryError,
    UnrecognizedServerError,
    UnsupportedServerError,
    UnsupportedServerWarning,
    VectorValueError,
)
from .fastpath import PreparedQuery, prepared
from .pool import CockroachPool, PoolSettings, PoolStats, pool_stats
from .retry import (
    Attempt,
    Classification,
    ErrorKind,
    RetryEvent,
    RetryPolicy,
    RetryStats,
    claim_keys,
    classify,
    retry_stats,
    retrying,
    retrying_session,
    run_transaction,
)

__version__ = "0.1.0"

# plain sorted() order, as tests/test_public_api.py checks (not isort's)
__all__ = [  # noqa: RUF022
    "AmbiguousCommitError",
    "AsOfSystemTimeError",
    "Attempt",
    "Classification",
    "CockroachDBDialect",
    "CockroachPool",
    "ConnectParameterError",
    "DeadlineExceededError",
    "DialectConflictWarning",
    "DriverModeError",
    "ErrorKind",
    "FastPathError",
    "IsolationLevelUpgradeWarning",
    "PoolSettings",
    "PoolStats",
    "PreparedParameterError",
    "PreparedQuery",
    "ReplayMismatchError",
    "RetriesExhaustedError",
    "RetryEvent",
    "RetryPolicy",
    "RetryStats",
    "ServerInfo",
    "TransactionRetryError",
    "UnrecognizedServerError",
    "UnsupportedServerError",
    "UnsupportedServerWarning",
    "Upsert",
    "VECTOR",
    "VectorValueError",
    "__version__",
    "as_of_system_time",
    "claim_keys",
    "classify",
    "follower_read_timestamp",
    "index_hint",
    "parse_server_version",
    "pool_stats",
    "prepared",
    "retry_stats",
    "retrying",
    "retrying_session",
    "run_transaction",
    "set_transaction_as_of_system_time",
    "set_vector_search_beam",
    "timestampdiff",
    "unique_rowid",
    "upsert",
    "uuid_primary_key",
    "vector_dims",
    "vector_norm",
    "with_max_staleness",
]

#: (name SQLAlchemy looks up, module, class) for every scheme this package serves.
DIALECTS = (
    (
        "cockroachdb",
        "sqlalchemy_crdb_async.dialect.psycopg2",
        "CockroachDBDialect_psycopg2",
    ),
    (
        "cockroachdb.psycopg2",
        "sqlalchemy_crdb_async.dialect.psycopg2",
        "CockroachDBDialect_psycopg2",
    ),
    (
        "cockroachdb.asyncpg",
        "sqlalchemy_crdb_async.dialect.asyncpg",
        "CockroachDBDialect_asyncpg",
    ),
    (
        "cockroachdb.psycopg",
        "sqlalchemy_crdb_async.dialect.psycopg",
        "CockroachDBDialect_psycopg",
    ),
    (
        "cockroachdb.psycopg_async",
        "sqlalchemy_crdb_async.dialect.psycopg",
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
        from .dialect import alembic  # noqa: F401 - registers CockroachDBImpl


_register()
_register_alembic()
_warn_if_other_dialect_installed()
