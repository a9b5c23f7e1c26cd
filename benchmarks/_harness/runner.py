"""Run the cells: every (workload, scenario, concurrency, repeat), interleaved.

A *cell* is one measurement: open the scenario's variant (a fresh pool or
engine sized to the concurrency), warm it up (every worker runs
``warmup_ops`` operations, so every connection is open and every statement
prepared), then run ``concurrency`` tasks that call the operation back to
back for ``duration_s`` seconds, close the variant, and run the workload's
check (the bank's balance). A storm cell instead starts ``storm_tasks``
operations at once on a pool of 16.

Recorded per cell: completed operations, wall time, each operation's latency
(``time.perf_counter``), client CPU (``time.process_time`` over the timed
window: this process only, not the server), retries and their SQLSTATEs,
and errors that reached the caller.

Interleaving: repeat 1 runs every workload, concurrency and scenario once,
then repeat 2 does it again, and so on; within a repeat the scenario order
is rotated by the repeat number, so no variant always runs first (on a warm
or a cold server). The report takes medians over the repeats.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..workloads import BenchmarkInvariantError, Ctx, Scenario, Workload
from .variants import VARIANTS, asyncpg_connect_kwargs

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.engine import URL

__all__ = ["CellResult", "CellSpec", "RunConfig", "plan_cells", "run_cell"]


@dataclass(frozen=True)
class RunConfig:
    """What to run; the CLI fills it from its options."""

    concurrency: tuple[int, ...] = (1, 16, 64)
    duration_s: float = 2.0
    repeats: int = 3
    storm_tasks: int = 10_000
    storm_pool_size: int = 16
    warmup_ops: int = 2
    seed: int = 20_240_601
    #: Round trip added by the delay proxy (``--rtt-ms``); 0: direct.
    rtt_ms: float = 0.0


@dataclass(frozen=True)
class CellSpec:
    workload: Workload
    scenario: Scenario
    concurrency: int
    repeat: int

    def describe(self) -> str:
        s = self.scenario
        return f"{s.workload} {s.variant}/{s.api} c={self.concurrency} r{self.repeat}"


@dataclass
class CellResult:
    """One measurement; every field goes to the JSON report."""

    workload: str
    variant: str
    api: str
    label: str
    concurrency: int
    repeat: int
    status: str = "ok"  # "ok" | "error" | "unavailable"
    reason: str | None = None
    ops: int = 0
    wall_s: float = 0.0
    ops_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_op: float | None = None
    retries: int = 0
    retries_per_commit: float | None = None
    sqlstates: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_cells(
    workloads: Sequence[Workload], config: RunConfig
) -> tuple[list[CellSpec], list[CellResult]]:
    """The interleaved cell order, and a row for each unavailable scenario."""
    unavailable: list[CellResult] = []
    runnable: dict[str, list[Scenario]] = {}
    for w in workloads:
        runnable[w.name] = []
        for s in w.scenarios:
            reason = VARIANTS[s.variant].unavailable_reason() or s.unavailable_reason()
            if reason:
                for c in _concurrencies(w, config):
                    unavailable.append(
                        CellResult(
                            s.workload,
                            s.variant,
                            s.api,
                            s.label,
                            c,
                            0,
                            status="unavailable",
                            reason=reason,
                        )
                    )
            else:
                runnable[w.name].append(s)
    cells: list[CellSpec] = []
    for r in range(config.repeats):
        for w in workloads:
            scenarios = runnable[w.name]
            k = r % len(scenarios) if scenarios else 0
            rotated = scenarios[k:] + scenarios[:k]
            for c in _concurrencies(w, config):
                cells.extend(CellSpec(w, s, c, r + 1) for s in rotated)
    return cells, unavailable


def _concurrencies(w: Workload, config: RunConfig) -> tuple[int, ...]:
    return (config.storm_tasks,) if w.mode == "storm" else config.concurrency


async def run_cell(
    spec: CellSpec,
    url: URL,
    config: RunConfig,
    admin: Any,
    on_tick: Callable[[], None] | None = None,
) -> CellResult:
    """Measure one cell; raises only :class:`BenchmarkInvariantError`."""
    s = spec.scenario
    result = CellResult(
        s.workload, s.variant, s.api, s.label, spec.concurrency, spec.repeat
    )
    if spec.workload.before_cell is not None:
        await spec.workload.before_cell(admin)
    variant = VARIANTS[s.variant]
    storm = spec.workload.mode == "storm"
    pool_size = config.storm_pool_size if storm else spec.concurrency
    seed = zlib.crc32(
        f"{config.seed}/{s.key}/{spec.concurrency}/{spec.repeat}".encode()
    )
    handle: Any = None
    try:
        handle = await variant.open(url, pool_size)
        ctx = Ctx(handle, random.Random(seed))
        if s.prepare is not None:
            await s.prepare(ctx)
        warm = pool_size * config.warmup_ops if storm else config.warmup_ops
        workers = 1 if storm else spec.concurrency
        await _warm_up(ctx, s, warm, workers)
        ctx.reset_counters()
        if s.started is not None:
            await s.started(ctx)
        if storm:
            latencies, wall, cpu, first = await _storm(ctx, s, spec.concurrency)
        else:
            latencies, wall, cpu, first = await _timed(
                ctx, s, spec.concurrency, config.duration_s, on_tick
            )
        if s.finished is not None:
            await s.finished(ctx)
    except BenchmarkInvariantError:
        raise
    except Exception as e:
        result.status = "error"
        result.reason = f"{type(e).__name__}: {e}"
        return result
    finally:
        if handle is not None:
            await asyncio.shield(variant.close(handle))
    if spec.workload.check is not None:
        await spec.workload.check(admin)
    _fill(result, ctx, latencies, wall, cpu, first)
    return result


async def _warm_up(ctx: Ctx, s: Scenario, n: int, workers: int) -> None:
    # An operation may fail now and then (a bare retrying_session lets
    # ReplayMismatchError through); only when every one fails is the scenario
    # broken.
    failed: list[Exception] = []
    ok = 0

    async def repeat() -> None:
        nonlocal ok
        for _ in range(n):
            try:
                await s.op(ctx)
            except Exception as e:
                failed.append(e)
            else:
                ok += 1

    await asyncio.gather(*(repeat() for _ in range(workers)))
    if failed and not ok:
        raise failed[0]


Measured = tuple[list[float], float, float, "str | None"]


async def _timed(
    ctx: Ctx,
    s: Scenario,
    concurrency: int,
    duration_s: float,
    on_tick: Callable[[], None] | None,
) -> Measured:
    latencies: list[float] = []
    first: list[str] = []
    clock = time.perf_counter
    stop_at = clock() + duration_s

    async def worker() -> None:
        while clock() < stop_at:
            started = clock()
            try:
                await s.op(ctx)
            except Exception as e:
                ctx.errors += 1
                if not first:
                    first.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(clock() - started)

    cpu0, t0 = time.process_time(), clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = clock() - t0, time.process_time() - cpu0
    if on_tick is not None:
        on_tick()
    return latencies, wall, cpu, first[0] if first else None


async def _storm(ctx: Ctx, s: Scenario, tasks: int) -> Measured:
    latencies: list[float] = []
    first: list[str] = []
    clock = time.perf_counter
    t0 = clock()

    async def task() -> None:
        try:
            await s.op(ctx)
        except Exception as e:
            ctx.errors += 1
            if not first:
                first.append(f"{type(e).__name__}: {e}")
            return
        latencies.append(clock() - t0)

    cpu0 = time.process_time()
    await asyncio.gather(*(task() for _ in range(tasks)))
    wall, cpu = clock() - t0, time.process_time() - cpu0
    return latencies, wall, cpu, first[0] if first else None


def _fill(
    result: CellResult,
    ctx: Ctx,
    latencies: list[float],
    wall: float,
    cpu: float,
    first_error: str | None,
) -> None:
    ops = len(latencies)
    result.ops = ops
    result.wall_s = wall
    result.ops_per_s = ops / wall if wall > 0 else 0.0
    result.retries = ctx.retries
    result.sqlstates = dict(sorted(ctx.sqlstates.items()))
    result.errors = ctx.errors
    result.first_error = first_error
    if ops:
        ordered = sorted(latencies)
        result.p50_ms = percentile(ordered, 0.50) * 1e3
        result.p99_ms = percentile(ordered, 0.99) * 1e3
        result.cpu_ms_per_op = cpu / ops * 1e3
        result.retries_per_commit = ctx.retries / ops
    if ctx.errors and not ops:
        result.status = "error"
        result.reason = first_error


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


async def connect_admin(url: URL) -> Any:
    import asyncpg

    return await asyncpg.connect(**asyncpg_connect_kwargs(url))
