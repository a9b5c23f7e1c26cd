"""The psycopg 3 dialects: ``cockroachdb+psycopg://``, sync and async.

``create_engine("cockroachdb+psycopg://...")`` gives the sync dialect;
``create_async_engine("cockroachdb+psycopg://...")`` (or the explicit
``cockroachdb+psycopg_async://``) gives the async one. psycopg reads libpq URL
parameters (``sslmode``, ``sslrootcert``, ``options``, ...) itself.

Everything CockroachDB-specific lives in :mod:`.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql.psycopg import (
    PGDialect_psycopg,
    PGDialectAsync_psycopg,
)
from typing_extensions import override

from .base import CockroachDBDialect

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine.interfaces import Dialect

__all__ = ["CockroachDBDialectAsync_psycopg", "CockroachDBDialect_psycopg"]


class CockroachDBDialect_psycopg(CockroachDBDialect, PGDialect_psycopg):
    """``cockroachdb+psycopg://`` with ``create_engine``."""

    driver = "psycopg"
    supports_statement_cache = True

    @override
    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        return CockroachDBDialectAsync_psycopg


class CockroachDBDialectAsync_psycopg(CockroachDBDialect, PGDialectAsync_psycopg):
    """``cockroachdb+psycopg://`` with ``create_async_engine``."""

    driver = "psycopg_async"
    supports_statement_cache = True

    @override
    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        return cls


dialect = CockroachDBDialect_psycopg
dialect_async = CockroachDBDialectAsync_psycopg
