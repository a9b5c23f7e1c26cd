"""The CockroachDB dialects, laid out as SQLAlchemy's ``dialects/postgresql/``.

==================  =============================================================
module              what it does
==================  =============================================================
``base``            :class:`CockroachDBDialect`: server detection at first
                    connect, isolation levels, the CockroachDB flags
``server``          :class:`ServerInfo`, :func:`parse_server_version`
``asyncpg``         ``cockroachdb+asyncpg://`` (primary) and the asyncpg
                    adaptations
``psycopg``         ``cockroachdb+psycopg://`` (sync and async)
``psycopg2``        ``cockroachdb+psycopg2://`` and ``cockroachdb://``
``_libpq``          libpq URL parameters (CockroachDB Cloud URLs) for asyncpg
``compiler``        SQL, DDL and type compilers, identifier quoting
``_keywords``       both servers' keywords that the compiler always quotes
``types``           CockroachDB's types and their reflection names
``reflection``      columns and indexes as CockroachDB's catalogue reports them
``indexdef``        parse CockroachDB's ``pg_indexes.indexdef`` text
``constructs``      :func:`as_of_system_time` and friends, :func:`index_hint`
``dml``             :func:`upsert`
``functions``       :func:`timestampdiff`, :func:`unique_rowid`,
                    :func:`uuid_primary_key`
``_keywords``       the reserved words of both servers (identifier quoting)
``alembic``         Alembic's ``CockroachDBImpl`` (registered when installed)
``provision``,      SQLAlchemy's and Alembic's test-suite hooks (names fixed by
``requirements``    SQLAlchemy's plugin)
==================  =============================================================
"""

from __future__ import annotations

from .base import CockroachDBDialect
from .server import ServerInfo, parse_server_version

__all__ = ["CockroachDBDialect", "ServerInfo", "parse_server_version"]
