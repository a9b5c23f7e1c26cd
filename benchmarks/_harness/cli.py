"""``python -m benchmarks``: options, server, the run, the report.

See ``benchmarks/README.md`` for what is measured and how to read it. Exit
status: 0 when every cell ran, 1 when some cell failed (the table says
which), 2 for bad options, 3 when a workload's check failed (the bank lost or
made money): that one stops the run at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..workloads import BenchmarkInvariantError, Scenario, Workload, all_workloads
from .legacy import DEFAULT_CACHE_DIR, load_legacy_dialect
from .rtt import DelayProxy, measure_added_rtt_ms
from .runner import CellResult, RunConfig, connect_admin, plan_cells, run_cell

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from rich.console import Console
    from sqlalchemy.engine import URL

    from sqlalchemy_crdb_async.testing.provider import TestServer

__all__ = ["main"]

BENCH_DB = "crdb_async_bench"
STMTS_DB = "crdb_async_bench_stmts"
DEFAULT_OUT = Path("bench-results")
QUICK = RunConfig(concurrency=(4,), duration_s=0.3, repeats=1, storm_tasks=1_000)
EXIT_CELL_FAILED = 1
EXIT_USAGE = 2
EXIT_INVARIANT = 3
_T = TypeVar("_T")


def _concurrency(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"--concurrency wants positive integers separated by commas, "
            f"such as 1,16,64; got {text!r}"
        )
    return values


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"want a positive number, got {text!r}")
        return value

    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10_000:
        raise argparse.ArgumentTypeError(
            f"want milliseconds >= 0 (and < 10000), got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    names = list(all_workloads())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of sqlalchemy-crdb-async side by side with raw "
        "asyncpg, SQLAlchemy's postgresql+asyncpg and sqlalchemy-cockroachdb.",
    )
    p.add_argument(
        "--url",
        help="server to run on (any postgresql:// or cockroachdb:// URL; the "
        f"database {BENCH_DB!r} is created there); default: $CRDB_TEST_URL, "
        "else a 'cockroach' binary on PATH, else an embedded PostgreSQL started "
        "for the run",
    )
    p.add_argument(
        "--workload",
        action="append",
        choices=names,
        help="run only this workload (repeatable); default: all of " + ", ".join(names),
    )
    p.add_argument(
        "--api",
        action="append",
        help="run only scenarios whose API contains this text (repeatable); the "
        "reference scenario always runs, for the ratios",
    )
    p.add_argument(
        "--concurrency",
        type=_concurrency,
        help="concurrent tasks per cell, comma-separated (default 1,16,64)",
    )
    p.add_argument(
        "--duration-s",
        "--duration",
        type=_positive(float),
        help="seconds per timed cell (default 2)",
    )
    p.add_argument(
        "--repeats", type=_positive(int), help="repeats of every cell (default 3)"
    )
    p.add_argument(
        "--storm-tasks",
        type=_positive(int),
        help="tasks per checkout storm (default 10000)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_OUT / "results.json",
        help="write every cell and the summary here (default %(default)s)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=DEFAULT_OUT,
        help="write <workload>.png plots here (default %(default)s/)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run under a minute: concurrency 4, 0.3 s cells, 1 repeat, "
        "1,000-task storm (explicit options still win)",
    )
    p.add_argument(
        "--no-statements",
        action="store_true",
        help="skip counting statements per operation",
    )
    p.add_argument(
        "--legacy-cache",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where sqlalchemy-cockroachdb is installed without dependencies "
        "(default %(default)s)",
    )
    p.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop; auto = uvloop when installed (default)",
    )
    p.add_argument(
        "--rtt-ms",
        type=_non_negative,
        default=0.0,
        help="add this round-trip time (ms) to every variant's connections through "
        "a delay proxy in its own process (default 0: direct; a same-region "
        "deployment sees 0.5-2)",
    )
    p.add_argument("--seed", type=int, default=RunConfig.seed)
    return p


def config_from(args: argparse.Namespace) -> RunConfig:
    base = QUICK if args.quick else RunConfig()
    changes: dict[str, Any] = {"seed": args.seed, "rtt_ms": args.rtt_ms}
    if args.concurrency:
        changes["concurrency"] = args.concurrency
    if args.duration_s:
        changes["duration_s"] = args.duration_s
    if args.repeats:
        changes["repeats"] = args.repeats
    if args.storm_tasks:
        changes["storm_tasks"] = args.storm_tasks
    return replace(base, **changes)


@dataclass
class Outcome:
    cells: list[CellResult] = field(default_factory=list)
    statements: dict[tuple[str, str, str], float | None] = field(default_factory=dict)
    statements_note: str = ""
    #: The round trip the delay proxy actually added (--rtt-ms), in ms.
    rtt_measured_ms: float | None = None


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    import sqlalchemy_crdb_async  # noqa: F401 - registers our dialects first
    from sqlalchemy_crdb_async.testing.provider import TestServer, resolve_server

    args = build_parser().parse_args(argv)
    config = config_from(args)
    registry = all_workloads()
    workloads = [registry[n] for n in (args.workload or registry)]
    if args.api:
        for w in workloads:
            w.scenarios = [
                s
                for s in w.scenarios
                if s.reference or any(a in s.api for a in args.api)
            ]
    console = Console(stderr=True)

    # the k-NN workload needs the VECTOR type: its own server when need be
    vector_workloads = [w for w in workloads if w.name in VECTOR_WORKLOADS]
    workloads_main = [w for w in workloads if w.name not in VECTOR_WORKLOADS]
    legacy = load_legacy_dialect(args.legacy_cache)
    console.print(f"[bold]sqlalchemy-cockroachdb:[/] {legacy.note or legacy.reason}")
    server = TestServer(args.url, "--url") if args.url else resolve_server(None)
    try:
        try:
            console.print(f"[bold]server:[/] {server.describe()}")
            bench_url = server.create_database(BENCH_DB)
        except Exception as e:
            console.print(
                f"[bold red]cannot use the server:[/] {type(e).__name__}: {e}\n"
                f"The benchmark connects with --url and creates the database "
                f"{BENCH_DB!r} there: check the URL and that its user may "
                "CREATE DATABASE."
            )
            return EXIT_USAGE
        log_path: Path | None = None
        stmts_url: URL | None = None
        note = _statements_unavailable(server, args.no_statements)
        if note is None and server.embedded is not None:
            log_path = server.embedded.datadir.parent / "server.log"
            stmts_url = server.create_database(STMTS_DB)
        loop = _loop_name(args.loop)
        try:
            with contextlib.ExitStack() as stack:
                cell_url = bench_url
                if config.rtt_ms:
                    proxy = stack.enter_context(DelayProxy(bench_url, config.rtt_ms))
                    cell_url = proxy.url(bench_url)
                    console.print(
                        f"[bold]round trip:[/] +{config.rtt_ms:g} ms through a "
                        f"delay proxy (pid of its own) on 127.0.0.1:{proxy.port}"
                    )
                outcome = _run(
                    _run_all(
                        workloads_main,
                        config,
                        bench_url,
                        cell_url,
                        stmts_url,
                        log_path,
                        console,
                    ),
                    loop,
                )
        except BenchmarkInvariantError as e:
            console.print(f"[bold red]BENCHMARK INVARIANT BROKEN:[/] {e}")
            print(f"FAILED: {e}", file=sys.stderr)
            return EXIT_INVARIANT
        finally:
            server.drop_database(BENCH_DB)
            if stmts_url is not None:
                server.drop_database(STMTS_DB)
        if vector_workloads:
            _run_vector_workloads(
                vector_workloads, config, server, outcome, loop, console
            )
        if note is not None:
            outcome.statements_note = note
        return _report(
            args, config, workloads, outcome, server, legacy.note, loop, console
        )
    finally:
        server.stop()


#: Workloads that run on a server with the VECTOR type (benchmarks/workloads/knn.py).
VECTOR_WORKLOADS = ("knn",)
VECTOR_DB = "crdb_async_bench_vectors"


def _run_vector_workloads(
    workloads: Sequence[Workload],
    config: RunConfig,
    server: TestServer,
    outcome: Outcome,
    loop: str,
    console: Console,
) -> None:
    """Run ``workloads`` on a server with the VECTOR type (the benchmark's own
    when it has it, else an embedded PostgreSQL with pgvector) and add their
    cells to ``outcome``; statements are not counted there."""
    from sqlalchemy_crdb_async.testing.provider import resolve_pgvector_server

    vector_server = resolve_pgvector_server(server)
    try:
        if vector_server is not server:
            console.print(f"[bold]vector server:[/] {vector_server.describe()}")
        url = vector_server.create_database(VECTOR_DB, extensions=("vector",))
        try:
            more = _run(
                _run_all(workloads, config, url, url, None, None, console), loop
            )
        finally:
            vector_server.drop_database(VECTOR_DB)
    finally:
        if vector_server is not server:
            vector_server.stop()
    outcome.cells.extend(more.cells)
    outcome.statements.update(more.statements)


def _statements_unavailable(server: TestServer, skipped: bool) -> str | None:
    if skipped:
        return "statements per operation: not counted (--no-statements)"
    if server.embedded is None:
        return (
            "statements per operation: not counted: they are read from the "
            "server's statement log, which only the embedded server started by "
            "the benchmark exposes"
        )
    return None


def _loop_name(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _run(coro: Coroutine[Any, Any, _T], loop: str) -> _T:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def _run_all(
    workloads: Sequence[Workload],
    config: RunConfig,
    bench_url: URL,
    cell_url: URL,
    stmts_url: URL | None,
    log_path: Path | None,
    console: Console,
) -> Outcome:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .statements import count_statements, enable_statement_log

    cells, unavailable = plan_cells(workloads, config)
    runnable = _unique_scenarios(cells)
    outcome = Outcome()
    if cell_url is not bench_url:
        outcome.rtt_measured_ms = await measure_added_rtt_ms(bench_url, cell_url)
    admin = await connect_admin(bench_url)
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            for w in workloads:
                progress.console.print(f"setting up {w.name}")
                await w.setup(admin)
            if stmts_url is not None and log_path is not None:
                task = progress.add_task("counting statements", total=len(runnable))
                counter_admin = await connect_admin(stmts_url)
                try:
                    for w in workloads:
                        await w.setup(counter_admin)
                    await enable_statement_log(counter_admin, STMTS_DB)
                    by_name = {w.name: w for w in workloads}
                    for s in runnable:
                        progress.update(task, description=f"statements {s.key}")
                        before_cell = by_name[s.workload].before_cell
                        if before_cell is not None:  # workloads sharing tables
                            await before_cell(counter_admin)
                        try:
                            n = await count_statements(s, stmts_url, log_path)
                        except Exception as e:
                            console.print(f"[yellow]could not count {s.key}: {e}")
                            n = None
                        outcome.statements[(s.workload, s.variant, s.api)] = n
                        progress.advance(task)
                finally:
                    await counter_admin.close()
                outcome.statements_note = (
                    "statements per operation: counted once per scenario from the "
                    "embedded server's log (log_statement=all on a separate "
                    "database; simple-query messages and extended-protocol "
                    "Executes, Parse round trips not included; concurrency 1)"
                )
            task = progress.add_task("cells", total=len(cells))
            for spec in cells:
                progress.update(task, description=spec.describe())
                result = await run_cell(spec, cell_url, config, admin)
                outcome.cells.append(result)
                if result.status != "ok":
                    progress.console.print(
                        f"[red]{spec.describe()}: {result.reason}[/]"
                    )
                elif not console.is_terminal:  # no live bar: a line per cell
                    console.print(
                        f"{spec.describe()}: {result.ops_per_s:,.0f} ops/s, "
                        f"p99 {result.p99_ms or 0:.2f} ms"
                    )
                progress.advance(task)
    finally:
        await admin.close()
    outcome.cells.extend(unavailable)
    return outcome


def _unique_scenarios(cells: Sequence[Any]) -> list[Scenario]:
    seen: dict[str, Scenario] = {}
    for c in cells:
        seen.setdefault(c.scenario.key, c.scenario)
    return list(seen.values())


def _report(
    args: argparse.Namespace,
    config: RunConfig,
    workloads: Sequence[Workload],
    outcome: Outcome,
    server: TestServer,
    legacy_note: str,
    loop: str,
    console: Console,
) -> int:
    import asyncpg
    import sqlalchemy

    from . import report

    references = {w.name: (w.reference.variant, w.reference.api) for w in workloads}
    order = {
        (w.name, s.variant, s.api): (wi, si)
        for wi, w in enumerate(workloads)
        for si, s in enumerate(w.scenarios)
    }

    def position(c: CellResult) -> tuple[int, int, int, int]:
        wi, si = order[(c.workload, c.variant, c.api)]
        return wi, c.concurrency, si, c.repeat

    cells = sorted(outcome.cells, key=position)
    rows = report.summarize(cells, references, outcome.statements)
    cpus = os.cpu_count()
    notes = [
        f"server: {server.describe()}; client: Python {platform.python_version()} "
        f"({loop}), SQLAlchemy {sqlalchemy.__version__}, asyncpg "
        f"{asyncpg.__version__}; {cpus} CPUs shared by the client and the server, "
        "so ratios, not absolute numbers, are what carries over to other machines",
        f"medians of {config.repeats} repeat(s) of {config.duration_s:g} s per cell, "
        "cells interleaved; ratio = ops/s over raw asyncpg Pool's (the reference) "
        "at the same workload and concurrency; CPU = client process CPU time per "
        "operation; checkout_storm's concurrency is its task count on a pool of 16",
        outcome.statements_note,
        (
            f"round trip: --rtt-ms {config.rtt_ms:g} on every variant's connections "
            "(a delay proxy in its own process; measured: "
            f"+{outcome.rtt_measured_ms or 0:.2f} ms per round trip, median of "
            "SELECT 1 through it minus direct)"
            if config.rtt_ms
            else "round trip: loopback (no --rtt-ms)"
        ),
    ]
    if legacy_note:
        notes.append(legacy_note)
    notes.extend(_unavailable_notes(rows))
    table = report.markdown(
        rows, notes, [w.name for w in workloads if w.retries], quick=args.quick
    )
    meta = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "argv": sys.argv[1:],
        "config": asdict(config),
        "server": server.describe(),
        "python": platform.python_version(),
        "loop": loop,
        "sqlalchemy": sqlalchemy.__version__,
        "asyncpg": asyncpg.__version__,
        "cpus": cpus,
        "platform": platform.platform(),
        "notes": notes,
        "statements": {"/".join(k): v for k, v in outcome.statements.items()},
        "rtt_measured_ms": outcome.rtt_measured_ms,
        "quick": bool(args.quick),
    }
    report.write_json(args.json, meta, cells, rows)
    plots = report.write_plots(args.plot, rows, quick=args.quick)
    print(table)
    console.print(f"JSON: {args.json}; plots: {', '.join(map(str, plots))}")
    failed = [c for c in cells if c.status == "error"]
    if failed:
        console.print(f"[red]{len(failed)} cell(s) failed; see the table")
        return EXIT_CELL_FAILED
    return 0


def _unavailable_notes(rows: Sequence[Any]) -> list[str]:
    seen: dict[str, str] = {}
    for r in rows:
        if r.status in ("unavailable", "error") and r.reason:
            seen.setdefault(f"{r.status}: {r.workload} {r.variant} {r.api}", r.reason)
    return [f"{k}: {v}" for k, v in seen.items()]
