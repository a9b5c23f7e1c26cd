"""``pool_stats(engine)``: the public way to read a pool's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._pool import CockroachPool

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._stats import PoolStats

__all__ = ["pool_stats"]


def pool_stats(engine: AsyncEngine | Engine) -> PoolStats:
    """A :class:`PoolStats` dict (keys described there) of ``engine``'s pool.

    Accepts an async or sync engine made with ``PoolSettings().engine_kwargs()``;
    retries nothing; raises ``TypeError``, saying how to make one, otherwise.
    Example (``PoolSettings`` shows a longer one)::

        pooled = create_async_engine(url, **PoolSettings().engine_kwargs())
        async with pooled.connect():
            assert pool_stats(pooled)["checked_out"] == 1
        await pooled.dispose()
    """
    pool = engine.pool
    if not isinstance(pool, CockroachPool):
        raise TypeError(
            f"pool_stats() needs an engine whose pool is CockroachPool, got "
            f"{type(pool).__name__}; create it with "
            "create_async_engine(url, **PoolSettings().engine_kwargs())"
        )
    return pool.stats()
