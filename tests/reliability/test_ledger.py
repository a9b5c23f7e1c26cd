"""A ledger that survives faults: transfers through every retry helper while the
network and the server misbehave, then an audit.

Workers make transfers between accounts, each with a unique id recorded in the
same transaction, through ``run_transaction``, ``retrying()`` and
``retrying_session``, on an engine whose connections go through a
:class:`~sqlalchemy_crdb_async.testing.FaultProxy` to a PostgreSQL server of
this module's own (so that restarting it disturbs no other test). Meanwhile,
every few hundred ms, one fault: a backend terminated, every connection cut,
the network silent for a while (statements time out), the connection dropped
after COMMIT was sent (an ambiguous outcome), and once a server restart
(``pg_ctl restart -m fast``'s equivalent). A few transfers hit a
``statement_timeout`` on purpose (they fail, and are told so).

The audit: every transfer the caller was told committed is in the ledger once;
none it was told failed is there; an ambiguous one surfaced as
``AmbiguousCommitError`` (either way is allowed, never twice); the total is
conserved and each balance matches the ledger; new work succeeds within a
bounded time once the faults stop; no connection is left checked out, open, or
idle in a transaction. The figures are printed (and kept as test properties).

``--soak`` runs the fault phase for two minutes instead of a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from sqlalchemy_crdb_async import (
    AmbiguousCommitError,
    PoolSettings,
    RetryPolicy,
    pool_stats,
    retrying,
    retrying_session,
    run_transaction,
)
from sqlalchemy_crdb_async.testing import EmbeddedPostgres, FaultProxy
from tests.pool.support import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

ACCOUNTS = 10
INITIAL = 1_000
WORKERS = 6
FAULT_PHASE_S = 6.0
SOAK_PHASE_S = 120.0
RECOVERY_BOUND_S = 30.0
MAX_TRANSFERS_PER_WORKER = 100_000
APIS = ("run_transaction", "retrying", "retrying_session")
KINDS = ("terminate", "cut", "drop_commit", "silent", "terminate")
POLICY = RetryPolicy(
    initial_backoff_s=0.01, max_backoff_s=0.2, max_attempts=100, deadline_s=20
)
SETTINGS = PoolSettings(pool_size=4, ping_timeout_s=1.0, pool_timeout_s=20)


@dataclass
class Transfer:
    id: str
    src: int
    dst: int
    amount: int
    api: str
    times_out: bool = False


@dataclass
class Tally:
    committed: set[str] = field(default_factory=set)
    ambiguous: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    #: the transfers that run into statement_timeout on purpose
    meant_to_fail: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    by_api: Counter[str] = field(default_factory=Counter)

    @property
    def attempted(self) -> int:
        return len(self.committed) + len(self.ambiguous) + len(self.failed)


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres().start()
    try:
        yield pg
    finally:
        pg.stop()


def direct_dsn(pg: EmbeddedPostgres) -> str:
    return pg.url


async def setup_ledger(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(direct_dsn(pg))
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS transfers, accounts;"
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);"
            "CREATE TABLE transfers (id text PRIMARY KEY, src int NOT NULL,"
            " dst int NOT NULL, amount int NOT NULL)"
        )
        await conn.executemany(
            "INSERT INTO accounts VALUES ($1, $2)",
            [(i, INITIAL) for i in range(ACCOUNTS)],
        )
    finally:
        await conn.close()


async def apply(target: AsyncConnection | AsyncSession, t: Transfer) -> None:
    """The transfer's statements (the same for a connection and a session)."""
    move = "UPDATE accounts SET balance = balance + :amount WHERE id = :id"
    await target.execute(sa.text(move), {"amount": -t.amount, "id": t.src})
    await target.execute(sa.text(move), {"amount": t.amount, "id": t.dst})
    await target.execute(
        sa.text(
            "INSERT INTO transfers (id, src, dst, amount) "
            "VALUES (:id, :src, :dst, :amount)"
        ),
        {"id": t.id, "src": t.src, "dst": t.dst, "amount": t.amount},
    )
    if t.times_out:
        await target.execute(sa.text("SET LOCAL statement_timeout = '1ms'"))
        await target.execute(sa.text("SELECT pg_sleep(0.05)"))


async def transfer(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], t: Transfer
) -> None:
    if t.api == "run_transaction":
        await run_transaction(engine, lambda conn: apply(conn, t), policy=POLICY)
    elif t.api == "retrying":
        async for attempt in retrying(sessions, policy=POLICY):
            async with attempt as session:
                await apply(session, t)
    else:
        # a lost connection cannot be replayed inside the session: the
        # enclosing run_transaction runs the body again (its own session is
        # never used, so it never takes a connection)
        async def body(_: Any) -> None:
            async with retrying_session(sessions, policy=POLICY) as session:
                await apply(session, t)

        await run_transaction(sessions, body, policy=POLICY)


async def attempt(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    t: Transfer,
    tally: Tally,
) -> bool:
    try:
        await transfer(engine, sessions, t)
    except AmbiguousCommitError:
        tally.ambiguous.add(t.id)
        return False
    except Exception as err:  # told failed: must not be in the ledger
        tally.failed.add(t.id)
        if t.times_out:
            tally.meant_to_fail.add(t.id)
        tally.errors[type(err).__name__] += 1
        return False
    tally.committed.add(t.id)
    tally.by_api[t.api] += 1
    return True


def new_transfer(rng: random.Random, api: str) -> Transfer:
    src, dst = rng.sample(range(ACCOUNTS), 2)
    return Transfer(
        str(uuid.UUID(int=rng.getrandbits(128))),
        src,
        dst,
        rng.randint(1, 10),
        api,
        times_out=rng.random() < 0.03,
    )


async def worker(
    n: int,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    tally: Tally,
    stop: asyncio.Event,
) -> None:
    rng = random.Random(n)
    for i in range(MAX_TRANSFERS_PER_WORKER):
        if stop.is_set():
            return
        await attempt(engine, sessions, new_transfer(rng, APIS[i % 3]), tally)


async def terminate_one(pg: EmbeddedPostgres) -> bool:
    conn = await asyncpg.connect(direct_dsn(pg), timeout=5)
    try:
        return bool(
            await conn.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' ORDER BY random() LIMIT 1"
            )
        )
    finally:
        await conn.close()


async def inject_faults(
    pg: EmbeddedPostgres, proxy: FaultProxy, tally: Tally, phase_s: float
) -> None:
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    end = loop.time() + phase_s
    restart_at = loop.time() + phase_s * 0.4
    restarted = False
    for i in range(100_000):
        now = loop.time()
        if now >= end:
            return
        await asyncio.sleep(rng.uniform(0.2, 0.4))
        if not restarted and loop.time() >= restart_at:
            restarted = True
            await asyncio.to_thread(pg.restart)
            tally.faults["server restart"] += 1
            continue
        kind = KINDS[i % len(KINDS)]
        if kind == "terminate":
            with contextlib.suppress(
                OSError, asyncpg.PostgresError, asyncpg.InterfaceError
            ):
                if await terminate_one(pg):
                    tally.faults["backend terminated"] += 1
        elif kind == "cut":
            proxy.cut_all()
            tally.faults["proxy cut all"] += 1
        elif kind == "silent":
            proxy.silent = True
            try:
                await asyncio.sleep(rng.uniform(0.2, 1.5))
            finally:
                proxy.silent = False
            tally.faults["proxy silent"] += 1
        else:
            proxy.drop_response(0, trigger=b"COMMIT")
            tally.faults["dropped after COMMIT"] += 1


async def audit(pg: EmbeddedPostgres, tally: Tally) -> dict[str, int]:
    conn = await asyncpg.connect(direct_dsn(pg))
    try:

        async def none_idle_in_transaction() -> bool:
            stuck = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND state LIKE 'idle in transaction%'"
            )
            return bool(stuck == 0)

        # Connections the proxy cut stay "idle in transaction" on the server
        # until their backends read the closed sockets: wait for that (bounded)
        # before reading the ledger.
        await wait_for(none_idle_in_transaction, "no session idle in a transaction")
        rows = await conn.fetch("SELECT id, src, dst, amount FROM transfers")
        balances = dict(await conn.fetch("SELECT id, balance FROM accounts"))
    finally:
        await conn.close()
    ledger = Counter(r["id"] for r in rows)
    doubled = sum(1 for n in ledger.values() if n > 1)
    lost = len(tally.committed - set(ledger))
    assert doubled == 0
    assert lost == 0, "transfers reported committed are missing"
    assert not (tally.failed & set(ledger)), "transfers reported failed committed"
    assert set(ledger) <= tally.committed | tally.ambiguous
    assert sum(balances.values()) == ACCOUNTS * INITIAL
    expected = dict.fromkeys(range(ACCOUNTS), INITIAL)
    for r in rows:
        expected[r["src"]] -= r["amount"]
        expected[r["dst"]] += r["amount"]
    assert balances == expected
    return {
        "ambiguous_committed": len(tally.ambiguous & set(ledger)),
        "lost": lost,
        "doubled": doubled,
    }


def phase_s(config: pytest.Config) -> float:
    return SOAK_PHASE_S if config.getoption("--soak") else FAULT_PHASE_S


@pytest.mark.timeout(SOAK_PHASE_S + 280)  # --soak; the default run takes ~15 s
async def test_ledger_survives_faults(
    server: EmbeddedPostgres,
    request: pytest.FixtureRequest,
    record_property: Any,
) -> None:
    await setup_ledger(server)
    tally = Tally()
    assert server.port is not None
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        url = URL.create(
            "cockroachdb+asyncpg",
            username="postgres",
            host="127.0.0.1",
            port=proxy.port,
            database="postgres",
            query={"command_timeout": "1", "connect_timeout": "2"},
        )
        engine = create_async_engine(url, **SETTINGS.engine_kwargs())
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        stop = asyncio.Event()
        try:
            workers = [
                asyncio.create_task(worker(n, engine, sessions, tally, stop))
                for n in range(WORKERS)
            ]
            try:
                await inject_faults(server, proxy, tally, phase_s(request.config))
            finally:
                stop.set()
                done, pending = await asyncio.wait(workers, timeout=120)
            assert not pending, "workers did not finish after the faults stopped"
            for task in done:
                task.result()

            # recovery: new work succeeds within a bound once the faults stop
            started = time.monotonic()
            rng = random.Random(99)
            for i in range(1000):
                if await attempt(
                    engine, sessions, new_transfer(rng, APIS[i % 3]), tally
                ):
                    break
                assert time.monotonic() - started < RECOVERY_BOUND_S
            recovery_s = time.monotonic() - started
            stats = pool_stats(engine)
            assert stats["checked_out"] == 0
        finally:
            await engine.dispose()
        assert proxy.stats().connections_accepted > 0
    figures = await audit(server, tally)
    assert all(tally.by_api[api] > 0 for api in APIS), tally.by_api
    report = {
        "faults": sum(tally.faults.values()),
        **{f"fault {k}": v for k, v in sorted(tally.faults.items())},
        "attempted": tally.attempted,
        "committed": len(tally.committed),
        "ambiguous": len(tally.ambiguous),
        "failed": len(tally.failed),
        "failed_on_purpose": len(tally.meant_to_fail),
        **figures,
        "recovery_ms": round(recovery_s * 1000),
    }
    for key, value in report.items():
        record_property(key, value)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"\nledger under faults: {report}; errors: {dict(tally.errors)}"
        )
