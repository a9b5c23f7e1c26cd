"""The psycopg2 dialect: ``cockroachdb+psycopg2://`` and the bare ``cockroachdb://``.

The older ``sqlalchemy-cockroachdb`` package made bare ``cockroachdb://`` mean
psycopg2 for ``create_engine``; so does this one, so its users can switch by
changing an import. With ``create_async_engine``, the bare ``cockroachdb://``
picks the asyncpg dialect instead (an explicit ``+psycopg2`` stays psycopg2, and
SQLAlchemy then says that psycopg2 is not an async driver).

Everything CockroachDB-specific lives in :mod:`.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from typing_extensions import override

from .base import CockroachDBDialect

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine.interfaces import Dialect

__all__ = ["CockroachDBDialect_psycopg2"]


class CockroachDBDialect_psycopg2(CockroachDBDialect, PGDialect_psycopg2):
    """``cockroachdb+psycopg2://`` and ``cockroachdb://`` with ``create_engine``."""

    driver = "psycopg2"
    supports_statement_cache = True

    @override
    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        if "+" not in url.drivername:  # bare cockroachdb://
            from .asyncpg import CockroachDBDialect_asyncpg

            return CockroachDBDialect_asyncpg
        return cls


dialect = CockroachDBDialect_psycopg2
