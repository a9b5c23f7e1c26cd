"""Client instructions per point read, counted by valgrind: the figure that holds.

::

    python -m benchmarks.instructions                 # 3 runs, uvloop
    python -m benchmarks.instructions --runs 5 --loop asyncio
    python -m benchmarks.instructions --url 'postgresql://...'

``time.process_time`` per operation moves by 5-10% between runs on a loaded
2-core machine, more than the differences between the pools compared here.
The number of instructions the client executes per operation does not
depend on the load: this runs the client under valgrind's callgrind (the
server runs natively), counts instructions only inside measured windows
(``--instr-atstart=no``, then ``callgrind_control`` zeroes and dumps the
counters around each window), and reports per operation
``(I(long window) - I(short window)) / (long - short)``, so start-up and the
window's own overhead cancel. The garbage collector is collected before and
disabled during each window (its passes land at arbitrary points); the
operations are the point read of ``--workload point_read`` (a prebuilt-shape
``select()`` by primary key on ``engine.connect()``, and ``session.get()``),
on a pool of one connection, for: SQLAlchemy's ``postgresql+asyncpg``
(``stock``), this package's dialect on SQLAlchemy's pool (``ours``), and with
``PoolSettings().engine_kwargs()`` (``ours-pool``). Ratios are over
``stock`` in the same process. Each run is a new process with its own
``PYTHONHASHSEED`` (0, 1, 2, ...): a seed repeats its counts exactly, and
the layout each seed gives moves them by a few percent, so the table shows
the median over seeds and each run's ratio.

Instructions are not time (cache misses and the kernel's work are not in
them), so this complements the CPU-per-operation tables of
``python -m benchmarks``, it does not replace them. Needs ``valgrind``
(Debian's package) on PATH; say so and exit 2 when it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import glob
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

DB = "crdb_async_instructions_bench"
ROWS = 1_000
#: The two window lengths (operations); their difference is what counts.
SHORT, LONG = 50, 250
KINDS = ("stock", "ours", "ours-pool")
OPS = ("core", "orm")


def _engines(url: str) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from sqlalchemy_crdb_async import PoolSettings

    from .workloads.point_read import items  # noqa: F401 - the table

    one = {"pool_size": 1, "max_overflow": 0}
    ours = url.replace("postgresql://", "cockroachdb+asyncpg://", 1)
    return {
        "stock": create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://", 1), **one
        ),
        "ours": create_async_engine(ours, **one),
        "ours-pool": create_async_engine(
            ours, **PoolSettings(pool_size=1, max_overflow=0).engine_kwargs()
        ),
    }


async def _measure(url: str, out_dir: str) -> None:
    """Inside valgrind: the windows, each dumped as ``<op>-<kind>-<n>``."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from .workloads.point_read import Item, items

    engines = _engines(url)
    rng = random.Random(1)

    async def core(engine: Any, n: int) -> None:
        for _ in range(n):
            async with engine.connect() as conn:
                key = rng.randint(1, ROWS)
                (await conn.execute(select(items).where(items.c.id == key))).one()

    async def orm(engine: Any, n: int) -> None:
        for _ in range(n):
            async with AsyncSession(engine) as session:
                await session.get(Item, rng.randint(1, ROWS))

    ops = {"core": core, "orm": orm}
    pid = str(os.getpid())

    def control(*args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, pid],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    try:
        for engine in engines.values():  # connect, prepare, warm the caches
            for op in ops.values():
                await op(engine, 20)
        control("-i", "on")
        for name, op in ops.items():
            for kind, engine in engines.items():
                for n in (SHORT, LONG):
                    gc.collect()
                    gc.disable()
                    control("-z")
                    await op(engine, n)
                    control("-d", f"{name}-{kind}-{n}")
                    gc.enable()
        control("-i", "off")
    finally:
        for engine in engines.values():
            await engine.dispose()


def _read_dumps(out_dir: str) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str, int], int] = {}
    for path in glob.glob(os.path.join(out_dir, "callgrind.out.*")):
        with open(path) as f:
            head = f.read(4000)
        found = re.search(r"desc: Trigger: dump (\S+)", head)
        summary = re.search(r"^summary: (\d+)", head, re.MULTILINE)
        if found is None or summary is None:
            continue
        op, rest = found.group(1).split("-", 1)
        kind, n = rest.rsplit("-", 1)
        totals[(op, kind, int(n))] = int(summary.group(1))
    return {
        (op, kind): (totals[(op, kind, LONG)] - totals[(op, kind, SHORT)])
        / (LONG - SHORT)
        for op in OPS
        for kind in KINDS
    }


def _run_once(url: str, loop: str, seed: int) -> dict[tuple[str, str], float]:
    with tempfile.TemporaryDirectory(prefix="crdb-async-callgrind-") as out_dir:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--inside",
            out_dir,
            "--url",
            url,
            "--loop",
            loop,
        ]
        # String hashing fixed per run: the same seed repeats the run's
        # dict and set layouts exactly, and each seed's layout moves the
        # counts by a few percent, so the runs take seeds 0, 1, 2, ...
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(
                f"the run under valgrind failed ({done.returncode}):\n"
                f"{done.stderr[-2000:]}"
            )
        return _read_dumps(out_dir)


async def _prepare_table(url: str) -> None:
    import asyncpg

    from .workloads.point_read import make_items

    conn = await asyncpg.connect(url)
    try:
        await make_items(conn, ROWS)
    finally:
        await conn.close()


def _run_loop(coro: Any, loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--url", default=None, help="a postgresql:// URL")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside is not None:
        _run_loop(_measure(args.url, args.inside), args.loop)
        return 0
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print(
            "valgrind is not installed: apt-get install valgrind (Debian's "
            "package), then run this again",
            file=sys.stderr,
        )
        return 2
    import sqlalchemy_crdb_async  # noqa: F401 - registers the dialects
    from sqlalchemy_crdb_async.testing.provider import TestServer, resolve_server

    server = TestServer(args.url, "--url") if args.url else resolve_server(None)
    try:
        url = server.create_database(DB)
        try:
            plain = url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            print(f"server: {server.describe()}", file=sys.stderr)
            _run_loop(_prepare_table(plain), args.loop)
            runs = [_run_once(plain, args.loop, seed) for seed in range(args.runs)]
        finally:
            server.drop_database(DB)
    finally:
        server.stop()
    print(
        f"client instructions per operation (callgrind), {args.loop}, "
        f"{args.runs} runs (PYTHONHASHSEED 0-{args.runs - 1}), medians; "
        "ratio over stock in the same run\n"
    )
    print("| operation | pool | k instructions/op | vs stock | ratios per run |")
    print("|---|---|---:|---:|---|")
    for op in OPS:
        for kind in KINDS:
            per_op = statistics.median(run[(op, kind)] for run in runs)
            ratios = [run[(op, kind)] / run[(op, "stock")] for run in runs]
            print(
                f"| {op} | {kind} | {per_op / 1000:,.1f} | "
                f"{statistics.median(ratios):.3f} | "
                + ", ".join(f"{r:.3f}" for r in ratios)
                + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
