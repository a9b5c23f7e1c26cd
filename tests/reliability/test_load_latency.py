"""Load with latency: thousands of concurrent tasks on a small pool whose
connections go through a FaultProxy adding a round trip, a share of them
cancelled at random moments. Afterwards no connection is checked out or left
open, no session is idle in a transaction, and the process's RSS is reported
(before/after; a figure, not an assertion). 1,000 tasks by default; 10,000
with ``--soak``."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import PoolSettings, pool_stats
from sqlalchemy_crdb_async.testing import FaultProxy
from tests.pool.support import wait_for
from tests.reliability.test_pool_load import sessions_idle_in_transaction

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

POOL_SIZE = 8
TASKS = 1_000
SOAK_TASKS = 10_000
DELAY_MS = 0.5  # each way: about 1 ms per round trip
CANCEL_SHARE = 0.3
CANCEL_WITHIN_S = 2.0


def rss_mib() -> float:
    """This process's resident set size (Linux /proc), in MiB."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return float("nan")
    pages = int(statm.read_text().split()[1])
    return pages * 4096 / 2**20


@pytest.mark.timeout(600)  # --soak: 10,000 tasks
async def test_many_tasks_with_latency_and_cancellation(
    crdb_url: URL, request: pytest.FixtureRequest, record_property: Any
) -> None:
    tasks_n = SOAK_TASKS if request.config.getoption("--soak") else TASKS
    rng = random.Random(11)
    assert crdb_url.port is not None
    rss_before = rss_mib()
    async with FaultProxy("127.0.0.1", crdb_url.port, delay_ms=DELAY_MS) as proxy:
        url = crdb_url.set(host="127.0.0.1", port=proxy.port)
        settings = PoolSettings(pool_size=POOL_SIZE, pool_timeout_s=300.0)
        engine = create_async_engine(url, **settings.engine_kwargs())
        try:

            async def work(i: int) -> int:
                async with engine.connect() as conn:
                    value = await conn.scalar(text("SELECT CAST(:i AS int)"), {"i": i})
                    if i % 3 == 0:
                        await conn.commit()
                    return int(value)

            async def cancel_later(task: asyncio.Task[Any], delay_s: float) -> None:
                await asyncio.sleep(delay_s)
                task.cancel()

            tasks = [asyncio.create_task(work(i)) for i in range(tasks_n)]
            cancellers = [
                asyncio.create_task(cancel_later(t, rng.uniform(0, CANCEL_WITHIN_S)))
                for t in tasks
                if rng.random() < CANCEL_SHARE
            ]
            outcomes = await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), timeout=600
            )
            await asyncio.gather(*cancellers)
            cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
            errors = [o for o in outcomes if isinstance(o, Exception)]
            assert errors == []
            assert cancelled > 0
            done = [o for o in outcomes if isinstance(o, int)]
            assert done == sorted(done)  # each task got its own answer back

            async def all_returned() -> bool:
                return pool_stats(engine)["checked_out"] == 0

            await wait_for(all_returned, "every connection to be returned")

            async def none_idle_in_transaction() -> bool:
                return await sessions_idle_in_transaction(crdb_url) == 0

            # A connection terminated on cancellation stays 'idle in transaction'
            # on the server until its backend reads the closed socket.
            await wait_for(none_idle_in_transaction, "no session idle in a transaction")
            stats = pool_stats(engine)
            assert stats["connections"] <= POOL_SIZE
            assert stats["waiting"] == 0
        finally:
            await engine.dispose()

        async def proxy_drained() -> bool:
            return proxy.stats().open_connections == 0

        await wait_for(proxy_drained, "every proxied connection to close")
    rss_after = rss_mib()
    for key, value in {
        "tasks": tasks_n,
        "cancelled": cancelled,
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
    }.items():
        record_property(key, value)
    # the figures, shown with -s (and as JUnit properties)
    print(
        f"\nload with latency: {tasks_n} tasks, {cancelled} cancelled, pool "
        f"{POOL_SIZE}; RSS {rss_before:.1f} -> {rss_after:.1f} MiB"
    )
