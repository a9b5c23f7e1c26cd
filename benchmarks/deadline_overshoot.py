"""How far past ``RetryPolicy.deadline_s`` a retry helper returns.

::

    python -m benchmarks.deadline_overshoot               # 20 runs per cell
    python -m benchmarks.deadline_overshoot --runs 5 --deadline-s 0.5
    python -m benchmarks.deadline_overshoot --url 'cockroachdb://...'

Each cell is one helper (``run_transaction``, ``retrying``,
``retrying_session``, the sync ``run_transaction``) facing one stall: a row
lock held by another connection (``lock``), a ``pg_sleep`` statement
(``sleep``), a ``FaultProxy`` gone silent mid-transaction (``silent``; async
helpers only: the sync helper cannot bound a silent network). A run measures
wall time from the helper's entry to its return (``time.perf_counter``) and
client CPU (``time.process_time``); the overshoot is wall time minus the
deadline. The table gives median and max overshoot per cell, and CPU per run.

The server: ``--url``, else ``$CRDB_TEST_URL``, else an embedded PostgreSQL
(the test suite's provider). The machine's load shows in every number: run it
on a quiet machine for absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

DB = "crdb_async_deadline_bench"


async def _prepare(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)"
        )
        await conn.exec_driver_sql("DELETE FROM kv")
        await conn.exec_driver_sql("INSERT INTO kv VALUES (1, 0)")


def _helpers() -> dict[str, Callable[..., Awaitable[None]]]:
    from sqlalchemy_crdb_async import retrying, retrying_session, run_transaction

    async def via_run_transaction(engine: Any, work: Any, policy: Any) -> None:
        await run_transaction(engine, work, policy=policy)

    async def via_retrying(engine: Any, work: Any, policy: Any) -> None:
        async for attempt in retrying(engine, policy=policy):
            async with attempt as conn:
                await work(conn)

    async def via_retrying_session(engine: Any, work: Any, policy: Any) -> None:
        async with retrying_session(engine, policy=policy) as session:
            await work(await session.connection())

    return {
        "run_transaction": via_run_transaction,
        "retrying": via_retrying,
        "retrying_session": via_retrying_session,
    }


async def _one(call: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    from sqlalchemy_crdb_async import DeadlineExceededError

    wall, cpu = time.perf_counter(), time.process_time()
    try:
        await call()
    except DeadlineExceededError:
        pass
    else:  # pragma: no cover - the stall always outlasts the deadline
        raise RuntimeError("the helper returned before its deadline")
    return time.perf_counter() - wall, time.process_time() - cpu


async def _async_cells(url: URL, runs: int, deadline_s: float) -> list[list[Any]]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from sqlalchemy_crdb_async import RetryPolicy
    from sqlalchemy_crdb_async.testing import FaultProxy

    policy = RetryPolicy(deadline_s=deadline_s, admission=False)
    engine = create_async_engine(url)
    rows: list[list[Any]] = []
    try:
        await _prepare(engine)

        async def bump(conn: Any) -> None:
            await conn.exec_driver_sql("UPDATE kv SET v = v + 1 WHERE k = 1")

        async def sleep(conn: Any) -> None:
            await conn.exec_driver_sql("SELECT pg_sleep(60)")

        for name, helper in _helpers().items():
            # lock: another connection holds the row for the whole cell
            holder = await engine.connect()
            await holder.begin()
            await holder.exec_driver_sql("SELECT v FROM kv WHERE k = 1 FOR UPDATE")
            try:
                samples = [
                    await _one(partial(helper, engine, bump, policy))
                    for _ in range(runs)
                ]
            finally:
                await holder.rollback()
                await holder.close()
            rows.append([name, "lock", *_summary(samples, deadline_s)])
            samples = [
                await _one(partial(helper, engine, sleep, policy)) for _ in range(runs)
            ]
            rows.append([name, "sleep", *_summary(samples, deadline_s)])
            assert url.port is not None
            async with FaultProxy("127.0.0.1", url.port) as proxy:
                proxied = create_async_engine(
                    url.set(host="127.0.0.1", port=proxy.port)
                )

                async def stall(conn: Any, proxy: FaultProxy = proxy) -> None:
                    await conn.exec_driver_sql("SELECT 1")
                    proxy.silent = True
                    await conn.exec_driver_sql("SELECT 2")

                samples = []
                try:
                    for _ in range(runs):
                        samples.append(
                            await _one(partial(helper, proxied, stall, policy))
                        )
                        proxy.silent = False
                        proxy.cut_all()
                finally:
                    await proxied.dispose()
            rows.append([name, "silent", *_summary(samples, deadline_s)])
    finally:
        await engine.dispose()
    return rows


def _sync_cells(url: URL, runs: int, deadline_s: float) -> list[list[Any]]:
    from sqlalchemy import create_engine

    from sqlalchemy_crdb_async import DeadlineExceededError, RetryPolicy
    from sqlalchemy_crdb_async.sync import run_transaction

    policy = RetryPolicy(deadline_s=deadline_s)
    engine = create_engine(url.set(drivername="cockroachdb+psycopg"))
    samples: list[tuple[float, float]] = []
    try:
        with engine.connect() as holder:
            holder.begin()
            holder.exec_driver_sql("SELECT v FROM kv WHERE k = 1 FOR UPDATE")
            for _ in range(runs):
                wall, cpu = time.perf_counter(), time.process_time()
                with contextlib.suppress(DeadlineExceededError):
                    run_transaction(
                        engine,
                        lambda c: c.exec_driver_sql(
                            "UPDATE kv SET v = v + 1 WHERE k = 1"
                        ),
                        policy=policy,
                    )
                samples.append((time.perf_counter() - wall, time.process_time() - cpu))
            holder.rollback()
    finally:
        engine.dispose()
    return [["sync run_transaction", "lock", *_summary(samples, deadline_s)]]


def _summary(samples: list[tuple[float, float]], deadline_s: float) -> list[str]:
    over = [wall - deadline_s for wall, _ in samples]
    cpu = [c for _, c in samples]
    return [
        f"{statistics.median(over) * 1000:.0f}",
        f"{max(over) * 1000:.0f}",
        f"{statistics.mean(cpu) * 1000:.1f}",
        str(len(samples)),
    ]


def main(argv: list[str] | None = None) -> int:
    import sqlalchemy_crdb_async  # noqa: F401 - registers the dialects
    from sqlalchemy_crdb_async.testing.provider import TestServer, resolve_server

    parser = argparse.ArgumentParser(prog="python -m benchmarks.deadline_overshoot")
    parser.add_argument("--url", default=None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--deadline-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.deadline_s <= 0:
        parser.error("--runs must be >= 1 and --deadline-s > 0")
    server = TestServer(args.url, "--url") if args.url else resolve_server(None)
    try:
        url = server.create_database(DB)
        try:
            print(f"server: {server.describe()}", file=sys.stderr)
            rows = asyncio.run(_async_cells(url, args.runs, args.deadline_s))
            rows += _sync_cells(url, args.runs, args.deadline_s)
        finally:
            server.drop_database(DB)
    finally:
        server.stop()
    print(f"deadline_s = {args.deadline_s}, {args.runs} runs per cell\n")
    print(
        "| helper | stall | overshoot median ms | overshoot max ms | CPU ms/run | n |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
