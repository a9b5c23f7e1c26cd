"""Pool checkout overhead, with and without a ping due: CockroachPool vs stock.

Run: ``python -m benchmarks.pool_checkout [--url URL] [--iterations N] [--json]``
(default: a throwaway embedded PostgreSQL). One task checks a connection out
and back in, ``N`` times per variant, on a pool of one connection, and times
the checkout (``await engine.connect()``) and the return
(``await conn.close()``) separately:

====================  ========================================================
variant               what the checkout does
====================  ========================================================
crdb, no ping due     CockroachPool, connection idle < ``idle_before_ping_s``
crdb, ping due        CockroachPool, ``idle_before_ping_s=0``: one ``SELECT 1``
stock                 SQLAlchemy's AsyncAdaptedQueuePool, no pre-ping
stock, pre_ping       SQLAlchemy's pre-ping: BEGIN, ``;``, ROLLBACK
====================  ========================================================

The return of CockroachPool includes its session reset (one round trip);
stock returns roll back only when a transaction is open. Reports p50 and p99
in microseconds, as a markdown table or JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sqlalchemy_crdb_async  # noqa: F401 - registers the dialects
from sqlalchemy_crdb_async import PoolSettings

WARMUP = 50


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _measure(engine: AsyncEngine, iterations: int) -> dict[str, float]:
    checkout: list[float] = []
    checkin: list[float] = []
    for i in range(WARMUP + iterations):
        t0 = time.perf_counter()
        conn = await engine.connect()
        t1 = time.perf_counter()
        await conn.close()
        t2 = time.perf_counter()
        if i >= WARMUP:
            checkout.append((t1 - t0) * 1e6)
            checkin.append((t2 - t1) * 1e6)
    return {
        "checkout_p50_us": _percentile(checkout, 0.50),
        "checkout_p99_us": _percentile(checkout, 0.99),
        "checkout_mean_us": statistics.fmean(checkout),
        "return_p50_us": _percentile(checkin, 0.50),
        "return_p99_us": _percentile(checkin, 0.99),
    }


def _variants(url: str) -> dict[str, AsyncEngine]:
    no_ping = PoolSettings(pool_size=1, idle_before_ping_s=3600.0)
    ping_due = PoolSettings(pool_size=1, idle_before_ping_s=0.0)
    return {
        "crdb, no ping due": create_async_engine(url, **no_ping.engine_kwargs()),
        "crdb, ping due": create_async_engine(url, **ping_due.engine_kwargs()),
        "stock": create_async_engine(url, pool_size=1),
        "stock, pre_ping": create_async_engine(url, pool_size=1, pool_pre_ping=True),
    }


async def run(url: str, iterations: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, engine in _variants(url).items():
        try:
            results[name] = await _measure(engine, iterations)
        finally:
            await engine.dispose()
    return results


def _table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| variant | checkout p50 (µs) | checkout p99 (µs) "
        "| return p50 (µs) | return p99 (µs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['checkout_p50_us']:.0f} | {r['checkout_p99_us']:.0f} "
            f"| {r['return_p50_us']:.0f} | {r['return_p99_us']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="cockroachdb+asyncpg:// URL; default: embedded")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    server: Any = None
    url = args.url
    if url is None:
        from sqlalchemy_crdb_async.testing import EmbeddedPostgres

        server = EmbeddedPostgres().start()
        url = server.url.replace("postgresql://", "cockroachdb+asyncpg://", 1)
    try:
        results = asyncio.run(run(url, args.iterations))
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(results, indent=2) if args.json else _table(results))


if __name__ == "__main__":
    main()
