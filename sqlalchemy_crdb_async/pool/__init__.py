"""Pool tuning for high-concurrency asyncio services.

Where each part lives:

==================  =============================================================
module              what it does
==================  =============================================================
``settings``        :class:`PoolSettings` (the knobs, sizing from cluster vCPUs)
                    and :meth:`PoolSettings.engine_kwargs`
``_pool``           :class:`CockroachPool`
``_stats_api``      :func:`pool_stats`
``_records``        per-connection state and counters
``_stats``          :class:`PoolStats`, the snapshot :func:`pool_stats` returns
``_listeners``      the dialect hooks the pool installs
``_maintenance``    the pool's background task (owned, asleep until due) and
                    its dispose sequence
``_reset``          liveness ping and session reset on return
``_statements``     the one judge, for the ordinary path and the fast path, of
                    which statements leave nothing for the reset to undo
``_closing``        the engine's ``Connection`` class that arms the reset
``_type_cache``     asyncpg type introspection shared by the pool's connections
==================  =============================================================
"""

from __future__ import annotations

from ._pool import CockroachPool
from ._stats import PoolStats
from ._stats_api import pool_stats
from .settings import PoolSettings

__all__ = ["CockroachPool", "PoolSettings", "PoolStats", "pool_stats"]
