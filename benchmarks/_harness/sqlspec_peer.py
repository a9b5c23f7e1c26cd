"""sqlspec (its asyncpg adapter) as a baseline: the thin layer users pick for speed.

sqlspec (https://github.com/litestar-org/sqlspec) runs SQL strings on a
driver's pool with parameter conversion, sqlglot-based statement processing
(cached) and result mapping to dicts or typed objects. It has no ORM, no
expression language of SQLAlchemy's, and no transaction retry: a 40001 reaches
the caller, so the bank scenario wraps it in the same plain retry loop as raw
asyncpg. Optional: the ``bench`` extra installs it; without it the variant is
listed as unavailable with the reason.

The variant opens ``AsyncpgConfig(connection_config={dsn, min_size, max_size})``
(an asyncpg pool of the cell's size, asyncpg's own reset on release) and each
operation runs in ``config.provide_session()`` (acquire, run, release).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from .variants import Variant

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["SQLSPEC", "sqlspec_reason"]


def sqlspec_reason() -> str | None:
    if importlib.util.find_spec("sqlspec") is None:
        return "sqlspec is not installed (pip install -e '.[bench]')"
    return None


async def _open(url: URL, pool_size: int) -> Any:
    from sqlspec.adapters.asyncpg import AsyncpgConfig

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    config = AsyncpgConfig(
        connection_config={"dsn": dsn, "min_size": pool_size, "max_size": pool_size}
    )
    await config.create_pool()
    return config


async def _close(config: Any) -> None:
    await config.close_pool()


SQLSPEC = Variant(
    "sqlspec",
    "sqlspec (asyncpg adapter)",
    "asyncpg",
    _open,
    _close,
    sqlspec_reason,
)
