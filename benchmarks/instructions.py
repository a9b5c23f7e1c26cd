"""Client instructions per point read or per HTTP request, counted by valgrind:
the figures that hold.

::

    python -m benchmarks.instructions                 # point reads, 3 runs, uvloop
    python -m benchmarks.instructions --runs 5 --loop asyncio
    python -m benchmarks.instructions --url 'postgresql://...'
    python -m benchmarks.instructions --suite http    # the FastAPI app's requests

``time.process_time`` per operation moves by 5-10% between runs on a loaded
2-core machine, more than the differences between the pools compared here.
The number of instructions the client executes per operation does not
depend on the load: this runs the client under valgrind's callgrind (the
server runs natively), counts instructions only inside measured windows
(``--instr-atstart=no``, then ``callgrind_control`` zeroes and dumps the
counters around each window, named ``<op>-<kind>-<n>``), and reports per
operation ``(I(long window) - I(short window)) / (long - short)``, so
start-up and the window's own overhead cancel. Every kind is warmed up
first (connections open, statements prepared, caches filled). The garbage
collector is collected before and disabled during each window (its passes
land at arbitrary points). Each run is a new process with its own
``PYTHONHASHSEED`` (0, 1, 2, ...): the layout each seed gives moves the
counts by a few percent, and a seed repeats its ratios to within about half
a percent (not exactly), so the table shows the median over seeds and each
run's ratio over the suite's reference kind, counted in the same process.

Two suites, chosen with ``--suite``:

``point_read`` (the default)
    The point read of ``--workload point_read`` (a prebuilt-shape
    ``select()`` by primary key on ``engine.connect()``, op ``core``, and
    ``session.get()``, op ``orm``) on a pool of one connection, for:
    SQLAlchemy's ``postgresql+asyncpg`` (``stock``, the reference), this
    package's dialect on SQLAlchemy's pool (``ours``), and with
    ``PoolSettings().engine_kwargs()`` (``ours-pool``); windows of 50 and
    250 reads after 20 of each.
``http``
    Client instructions per HTTP request of the example app
    (``examples/fastapi_bank``, pool of one connection, the benchmarks'
    retry policy) with the raw-asyncpg reference router of
    ``--workload fastapi_transfer`` mounted beside it (an asyncpg pool of one
    connection), the app's lifespan entered, driven in the same process by
    ``httpx.AsyncClient`` over ``httpx.ASGITransport``: one client, requests
    one after the other on 100 accounts, so nothing conflicts and every
    transaction commits at its first attempt. Op ``transfer``:
    ``POST /fast/transfers`` (kind ``fast``: ``RetryingRoute`` and the fast
    path) against ``POST /raw/transfers`` (kind ``raw``, the reference: the
    same statements on raw asyncpg in a plain retry loop), 1 unit between
    two distinct random accounts with a fresh ``Idempotency-Key``; op
    ``read``: ``GET /fast/accounts/{id}`` against ``GET /raw/accounts/{id}``.
    A count includes everything the client does for a request on both
    sides alike: FastAPI's routing, validation and JSON, and httpx's client
    and ASGI transport. Windows of 30 and 90 requests after 100 of each. The
    database's default isolation is SERIALIZABLE (as on CockroachDB and the
    embedded test server; set on the database when the server says
    otherwise), which the library's transactions rely on. Run it from the
    checkout's root
    (``examples`` must be importable); it needs FastAPI and httpx (the
    ``bench`` extra).

Instructions are not time (cache misses and the kernel's work are not in
them), so this complements the CPU-per-operation tables of
``python -m benchmarks``, it does not replace them. Needs ``valgrind``
(Debian's package) on PATH; say so and exit 2 when it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    #: ``callgrind_control``'s options for this process (``"-z"``, ...).
    Control = Callable[..., None]
    #: Runs ``n`` operations ``op`` of ``kind``.
    Run = Callable[[str, str, int], Awaitable[None]]
    #: Counts a suite's windows with its ``Run`` (:meth:`Suite.count_at`).
    Count = Callable[[Run], Awaitable[None]]

DB = "crdb_async_instructions_bench"
ROWS = 1_000
ACCOUNTS = 100


@dataclass(frozen=True)
class Suite:
    """One table: the operations counted, the kinds compared, how to run them.

    ``kinds[0]`` is the reference of the ratios. ``prepare(url)`` makes the
    database's tables (outside valgrind); ``measure(url, count)`` opens what
    the operations need and hands ``count`` the way to run them (see
    :meth:`count_at`).
    """

    name: str
    unit: str  # what one count is per, in the title
    per: str  # the same, short, in the column
    columns: tuple[str, str]  # the op's and the kind's column headers
    ops: tuple[str, ...]
    kinds: tuple[str, ...]
    prepare: Callable[[str], Awaitable[None]]
    measure: Callable[[str, Count], Awaitable[None]]
    warmup: int  # operations of every (op, kind) before the windows
    windows: tuple[int, int]  # the two windows' lengths, in operations
    legend: str = ""

    async def count_at(
        self,
        url: str,
        control: Control,
        *,
        warmup: int | None = None,
        windows: tuple[int, int] | None = None,
    ) -> None:
        """Inside valgrind: warm every kind up, then count and dump a window
        of each length for every (op, kind) through ``control``."""

        async def count(run: Run) -> None:
            await _count_windows(
                self.ops,
                self.kinds,
                run,
                control,
                self.warmup if warmup is None else warmup,
                self.windows if windows is None else windows,
            )

        await self.measure(url, count)


def window_name(op: str, kind: str, n: int) -> str:
    """A window's dump name; ``op`` holds no ``-`` (``kind`` may)."""
    return f"{op}-{kind}-{n}"


def window_key(name: str) -> tuple[str, str, int]:
    """``(op, kind, n)`` of a window's dump name (:func:`window_name`)."""
    op, rest = name.split("-", 1)
    kind, n = rest.rsplit("-", 1)
    return op, kind, int(n)


async def _count_windows(
    ops: Sequence[str],
    kinds: Sequence[str],
    run: Run,
    control: Control,
    warmup: int,
    windows: tuple[int, int],
) -> None:
    """Warm every kind up, then count a window of each length for every
    (op, kind), instructions on only inside the windows."""
    for kind in kinds:  # connect, prepare, warm the caches
        for op in ops:
            await run(op, kind, warmup)
    control("-i", "on")
    for op in ops:
        for kind in kinds:
            for n in windows:
                gc.collect()
                gc.disable()
                try:
                    control("-z")
                    await run(op, kind, n)
                    control("-d", window_name(op, kind, n))
                finally:
                    gc.enable()
    control("-i", "off")


def _callgrind_control(pid: int) -> Control:
    def control(*args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return control


# -- point reads ------------------------------------------------------------

POINT_READ_KINDS = ("stock", "ours", "ours-pool")
POINT_READ_OPS = ("core", "orm")


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


async def _point_reads(url: str, count: Count) -> None:
    """The point reads, on the table :func:`_prepare_items` made at ``url``
    (a ``postgresql://`` URL)."""
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

    async def run(op: str, kind: str, n: int) -> None:
        await ops[op](engines[kind], n)

    try:
        await count(run)
    finally:
        for engine in engines.values():
            await engine.dispose()


async def _prepare_items(url: str) -> None:
    import asyncpg

    from .workloads.point_read import make_items

    conn = await asyncpg.connect(url)
    try:
        await make_items(conn, ROWS)
    finally:
        await conn.close()


# -- HTTP requests of the example app ----------------------------------------

HTTP_KINDS = ("raw", "fast")
HTTP_OPS = ("transfer", "read")


async def _http_requests(url: str, count: Count) -> None:
    """The app's requests, on the accounts :func:`_prepare_accounts` made at
    ``url`` (a ``postgresql://`` URL); every request must answer 200 (or 409
    for a transfer the source cannot pay)."""
    import asyncpg
    import httpx

    from sqlalchemy_crdb_async import PoolSettings, RetryPolicy

    from .workloads._fastapi import account_ids, app_module
    from .workloads._fastapi_raw import raw_router

    app = app_module().create_app(
        url.replace("postgresql://", "cockroachdb+asyncpg://", 1),
        demo_accounts=False,
        pool=PoolSettings(pool_size=1, max_overflow=0),
        policy=RetryPolicy(
            max_attempts=100, initial_backoff_s=0.001, max_backoff_s=0.1
        ),
    )
    app.include_router(raw_router())
    app.state.raw_retries = collections.Counter()
    ids = [str(i) for i in account_ids(ACCOUNTS)]
    rng = random.Random(1)

    def check(response: httpx.Response, ok: tuple[int, ...]) -> None:
        if response.status_code not in ok:
            request = response.request
            raise RuntimeError(
                f"{request.method} {request.url.path}: {response.status_code} "
                f"{response.text}"
            )

    async def transfer(client: httpx.AsyncClient, kind: str, n: int) -> None:
        for _ in range(n):
            src, dst = rng.sample(ids, 2)
            key = str(uuid.UUID(int=rng.getrandbits(128)))
            response = await client.post(
                f"/{kind}/transfers",
                json={"from_id": src, "to_id": dst, "amount": "1"},
                headers={"Idempotency-Key": key},
            )
            check(response, (200, 409))

    async def read(client: httpx.AsyncClient, kind: str, n: int) -> None:
        for _ in range(n):
            response = await client.get(f"/{kind}/accounts/{rng.choice(ids)}")
            check(response, (200,))

    ops = {"transfer": transfer, "read": read}
    app.state.raw_pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await _require_serializable(app.state.raw_pool)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench"
            ) as client:

                async def run(op: str, kind: str, n: int) -> None:
                    await ops[op](client, kind, n)

                await count(run)
        finally:
            await lifespan.__aexit__(None, None, None)
    finally:
        await app.state.raw_pool.close()


async def _require_serializable(pool: Any) -> None:
    isolation = await pool.fetchval("SHOW default_transaction_isolation")
    if isolation != "serializable":
        raise RuntimeError(
            f"the database's default isolation is {isolation!r}; the app's "
            "transactions need SERIALIZABLE (python -m benchmarks.instructions "
            "sets it on its database)"
        )


async def _prepare_accounts(url: str) -> None:
    """The app's tables with ``ACCOUNTS`` accounts, at SERIALIZABLE by
    default (CockroachDB's default, and the embedded server's, where the
    FastAPI workloads run; a PostgreSQL given by --url may differ)."""
    import asyncpg

    from .workloads._fastapi import create_accounts

    conn = await asyncpg.connect(url)
    try:
        await create_accounts(conn, ACCOUNTS)
        if await conn.fetchval("SHOW default_transaction_isolation") != (
            "serializable"
        ):
            name = await conn.fetchval("SELECT current_database()")
            quoted = '"' + name.replace('"', '""') + '"'
            await conn.execute(
                f"ALTER DATABASE {quoted} SET default_transaction_isolation "
                "= 'serializable'"
            )
    finally:
        await conn.close()


SUITES = {
    s.name: s
    for s in (
        Suite(
            "point_read",
            "operation",
            "op",
            ("operation", "pool"),
            POINT_READ_OPS,
            POINT_READ_KINDS,
            _prepare_items,
            _point_reads,
            warmup=20,
            windows=(50, 250),
        ),
        Suite(
            "http",
            "request",
            "request",
            ("request", "endpoint"),
            HTTP_OPS,
            HTTP_KINDS,
            _prepare_accounts,
            _http_requests,
            warmup=100,
            windows=(30, 90),
            legend=(
                "fast: POST /fast/transfers and GET /fast/accounts/{id} of "
                "examples/fastapi_bank; raw: POST /raw/transfers and "
                "GET /raw/accounts/{id}, the same endpoints on raw asyncpg in "
                "the same app; 1 client over httpx's ASGITransport, "
                f"{ACCOUNTS} accounts, no conflicts\n"
            ),
        ),
    )
}


# -- running under valgrind and reading its dumps ----------------------------


def _read_dumps(out_dir: str, suite: Suite) -> dict[tuple[str, str], float]:
    """Instructions per operation of every (op, kind): the difference of its
    two windows' counts over the difference of their lengths."""
    totals: dict[tuple[str, str], dict[int, int]] = {}
    for path in glob.glob(os.path.join(out_dir, "callgrind.out.*")):
        with open(path) as f:
            head = f.read(4000)
        found = re.search(r"desc: Trigger: dump (\S+)", head)
        summary = re.search(r"^summary: (\d+)", head, re.MULTILINE)
        if found is None or summary is None:
            continue
        op, kind, n = window_key(found.group(1))
        totals.setdefault((op, kind), {})[n] = int(summary.group(1))
    per_op: dict[tuple[str, str], float] = {}
    for op in suite.ops:
        for kind in suite.kinds:
            counts = totals.get((op, kind), {})
            if len(counts) != 2:
                raise RuntimeError(
                    f"expected the dumps of two windows of {op} on {kind} in "
                    f"{out_dir}, found windows of {sorted(counts)} operations"
                )
            short, long = sorted(counts)
            per_op[(op, kind)] = (counts[long] - counts[short]) / (long - short)
    return per_op


def _run_once(
    url: str, loop: str, seed: int, suite: Suite
) -> dict[tuple[str, str], float]:
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
            "--suite",
            suite.name,
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
        return _read_dumps(out_dir, suite)


def _run_loop(coro: Any, loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def _print_table(
    suite: Suite, runs: list[dict[tuple[str, str], float]], loop: str
) -> None:
    ref = suite.kinds[0]
    print(
        f"client instructions per {suite.unit} (callgrind), {loop}, "
        f"{len(runs)} runs (PYTHONHASHSEED 0-{len(runs) - 1}), medians; "
        f"ratio over {ref} in the same run\n"
    )
    if suite.legend:
        print(suite.legend)
    op_column, kind_column = suite.columns
    print(
        f"| {op_column} | {kind_column} | k instructions/{suite.per} | "
        f"vs {ref} | ratios per run |"
    )
    print("|---|---|---:|---:|---|")
    for op in suite.ops:
        for kind in suite.kinds:
            per_op = statistics.median(run[(op, kind)] for run in runs)
            ratios = [run[(op, kind)] / run[(op, ref)] for run in runs]
            print(
                f"| {op} | {kind} | {per_op / 1000:,.1f} | "
                f"{statistics.median(ratios):.3f} | "
                + ", ".join(f"{r:.3f}" for r in ratios)
                + " |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--url", default=None, help="a postgresql:// URL")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--suite",
        choices=tuple(SUITES),
        default="point_read",
        help="point_read: instructions per point read (the default); http: "
        "per request of the FastAPI example app and its raw-asyncpg twin",
    )
    parser.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    if args.inside is not None:
        control = _callgrind_control(os.getpid())
        _run_loop(suite.count_at(args.url, control), args.loop)
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
            _run_loop(suite.prepare(plain), args.loop)
            runs = [
                _run_once(plain, args.loop, seed, suite) for seed in range(args.runs)
            ]
        finally:
            server.drop_database(DB)
    finally:
        server.stop()
    _print_table(suite, runs, args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
