"""The psycopg2 dialect: ``cockroachdb+psycopg2://`` and the bare ``cockroachdb://``.

The older ``sqlalchemy-cockroachdb`` package made bare ``cockroachdb://`` mean
psycopg2 for ``create_engine``; so does this one, so its users can switch by
changing an import. With ``create_async_engine``, the bare ``cockroachdb://``
picks the asyncpg dialect instead; an explicit ``+psycopg2`` raises
:class:`.DriverModeError` at once, naming ``cockroachdb+asyncpg://`` (or
``create_engine`` for sync code).

Everything CockroachDB-specific lives in :mod:`.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from typing_extensions import override

from ..errors import DriverModeError
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
        # Only create_async_engine() (or url.get_dialect(_is_async=True)) asks.
        raise DriverModeError(
            "cockroachdb+psycopg2:// is a synchronous driver: "
            "create_async_engine() cannot use it. Use "
            "create_async_engine('cockroachdb+asyncpg://...') (or "
            "'cockroachdb+psycopg://...'), or for synchronous code "
            "create_engine('cockroachdb+psycopg2://...')."
        )


dialect = CockroachDBDialect_psycopg2
