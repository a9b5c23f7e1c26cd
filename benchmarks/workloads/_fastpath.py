"""The prepared fast path (``sqlalchemy_crdb_async.prepared``) in the workloads.

Registered on the existing workloads (:func:`register`, called by
:func:`~benchmarks.workloads.all_workloads`), beside raw asyncpg, stock
SQLAlchemy and our default path:

- ``point_read``: ``prepared(select(items).where(id == :id)).one(engine)`` on
  the default pool (``ours``) and on ``PoolSettings`` (``ours-pool``); also
  Core and ORM on ``ours-pool`` (the pool the README recommends), so one run
  gives the whole CPU-per-read table;
- ``bank`` / ``bank_hot``: ``run_transaction(engine, fn)`` whose body reads
  and writes with prepared statements on the attempt's connection;
- ``fastapi_read``: the fast path without HTTP (the app's ``GET
  /fast/accounts/{id}`` runs the same statement, see ``examples/fastapi_bank``);
- the ``sqlspec`` baseline (:mod:`benchmarks._harness.sqlspec_peer`): point
  reads (``select_one``) and the banks (its session's transaction in the same
  plain retry loop as raw asyncpg: sqlspec retries nothing itself).

A scenario is only added when its (variant, API) is not there yet, so a
branch that registers the same row in the workload's own module wins.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, MetaData, Table, bindparam, or_, select

from .._harness.apis import missing_api, ours_api
from .._harness.sqlspec_peer import SQLSPEC
from .._harness.variants import VARIANTS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from . import Ctx, Op, Workload

__all__ = ["register"]

#: Same retry policy as the bank's own ``ours`` rows (benchmarks/workloads/bank.py).
MAX_ATTEMPTS = 100
BACKOFF_BASE_S = 0.001
BACKOFF_CAP_S = 0.1


def _fast_path_reason() -> str | None:
    return missing_api(("prepared",), "the prepared fast path is")


def _pool_settings_reason() -> str | None:
    return missing_api(("PoolSettings",), "the pool tuning is")


def _add(
    workload: Workload,
    variant: str,
    api: str,
    op: Op,
    **kwargs: Any,
) -> None:
    if any(s.variant == variant and s.api == api for s in workload.scenarios):
        return
    workload.scenario(variant, api, **kwargs)(op)


def register(workloads: dict[str, Workload]) -> None:
    """Add the fast-path scenarios to ``workloads`` (by name)."""
    VARIANTS.setdefault(SQLSPEC.key, SQLSPEC)
    _point_read(workloads["point_read"])
    for name in ("bank", "bank_hot"):
        _bank(workloads[name])
    _fastapi_read(workloads["fastapi_read"])


def _point_read(w: Workload) -> None:
    from . import point_read

    items = point_read.items
    query: dict[str, Any] = {}

    async def fast(ctx: Ctx) -> None:
        """prepared(select(items).where(id == :id)).one(engine)"""
        q = query.get("q")
        if q is None:
            q = query["q"] = ours_api("prepared")(
                select(items).where(items.c.id == bindparam("id"))
            )
        key = ctx.rng.randint(1, point_read.ROWS)
        row = await q.one(ctx.engine, id=key)
        assert row.id == key

    _add(w, "ours", "fast path", fast, requires=_fast_path_reason)
    _add(w, "ours-pool", "fast path", fast, requires=_fast_path_reason)
    _add(w, "ours-pool", "Core", point_read._core, requires=_pool_settings_reason)
    _add(w, "ours-pool", "ORM", point_read._orm, requires=_pool_settings_reason)

    async def sqlspec_read(ctx: Ctx) -> None:
        """sqlspec session.select_one (acquire, query, reset, release)"""
        key = ctx.rng.randint(1, point_read.ROWS)
        async with ctx.handle.provide_session() as session:
            row = await session.select_one(point_read.SQL, key)
        assert row["id"] == key

    _add(w, "sqlspec", "select_one", sqlspec_read)


def _bank(w: Workload) -> None:
    table = f"bench_{w.name}_accounts"  # as benchmarks/workloads/bank.py names it
    accounts = Table(
        table,
        MetaData(),
        Column("id", BigInteger, primary_key=True),
        Column("balance", BigInteger),
    )
    n_accounts = _accounts_of(w.name)
    statements: dict[str, Any] = {}

    def prepared_statements() -> tuple[Any, Any]:
        if not statements:
            prepared = ours_api("prepared")
            statements["read"] = prepared(
                select(accounts.c.id, accounts.c.balance).where(
                    or_(
                        accounts.c.id == bindparam("src"),
                        accounts.c.id == bindparam("dst"),
                    )
                )
            )
            statements["write"] = prepared(
                accounts.update()
                .where(accounts.c.id == bindparam("key"))
                .values(balance=bindparam("balance"))
            )
        return statements["read"], statements["write"]

    async def prepare(ctx: Ctx) -> None:
        ctx.extra["engine"] = ctx.engine.execution_options(
            isolation_level="SERIALIZABLE"
        )

        def on_retry(event: Any) -> None:
            ctx.record_retry(getattr(event, "sqlstate", None))

        ctx.extra["policy"] = ours_api("RetryPolicy")(
            max_attempts=MAX_ATTEMPTS,
            initial_backoff_s=BACKOFF_BASE_S,
            max_backoff_s=BACKOFF_CAP_S,
            on_retry=on_retry,
        )

    async def fast(ctx: Ctx) -> None:
        """run_transaction(engine, fn): prepared statements on its connection"""
        src, dst = ctx.rng.sample(range(1, n_accounts + 1), 2)
        amount = ctx.rng.randint(1, 10)
        read, write = prepared_statements()

        async def body(conn: AsyncConnection) -> None:
            balance = {r.id: r.balance for r in await read.all(conn, src=src, dst=dst)}
            if balance[src] < amount:
                return
            await write.execute(conn, key=src, balance=balance[src] - amount)
            await write.execute(conn, key=dst, balance=balance[dst] + amount)

        await ours_api("run_transaction")(
            ctx.extra["engine"], body, policy=ctx.extra["policy"]
        )

    _add(
        w,
        "ours",
        "run_transaction fast path",
        fast,
        requires=_fast_path_reason,
        prepare=prepare,
    )

    read_sql = f"SELECT id, balance FROM {table} WHERE id = $1 OR id = $2"
    write_sql = f"UPDATE {table} SET balance = $2 WHERE id = $1"

    async def sqlspec_loop(ctx: Ctx) -> None:
        """sqlspec session + the same plain retry loop (sqlspec retries nothing)"""
        src, dst = ctx.rng.sample(range(1, n_accounts + 1), 2)
        amount = ctx.rng.randint(1, 10)
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with ctx.handle.provide_session() as session:
                    await session.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    try:
                        rows = await session.select(read_sql, src, dst)
                        balance = {r["id"]: r["balance"] for r in rows}
                        if balance[src] >= amount:
                            await session.execute(write_sql, src, balance[src] - amount)
                            await session.execute(write_sql, dst, balance[dst] + amount)
                        await session.execute("COMMIT")
                    except BaseException:
                        await session.execute("ROLLBACK")
                        raise
                return
            except Exception as e:
                code = _sqlstate(e)
                if code not in ("40001", "40P01"):
                    raise
                ctx.record_retry(code)
            await asyncio.sleep(
                ctx.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            )
        raise RuntimeError(f"transfer {src}->{dst} gave up after {MAX_ATTEMPTS}")

    _add(w, "sqlspec", "retry loop", sqlspec_loop)


def _sqlstate(error: BaseException) -> str | None:
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return None
        code = getattr(seen, "sqlstate", None)
        if code:
            return str(code)
        seen = seen.__cause__
    return None


def _accounts_of(name: str) -> int:
    from . import bank

    return bank.HOT_ACCOUNTS if name == "bank_hot" else bank.ACCOUNTS


def _fastapi_read(w: Workload) -> None:
    from . import fastapi_read
    from ._fastapi import app_unavailable

    query: dict[str, Any] = {}

    def reason() -> str | None:
        return _fast_path_reason() or app_unavailable()

    async def fast(ctx: Ctx) -> None:
        """the app's prepared ACCOUNT_BY_ID.one_or_none(engine), no HTTP"""
        q = query.get("q")
        if q is None:
            from ._fastapi import app_module

            q = query["q"] = app_module().ACCOUNT_BY_ID
        row = await q.one_or_none(ctx.engine, id=ctx.rng.choice(fastapi_read.IDS))
        assert row is not None

    _add(w, "ours", "fast path", fast, requires=reason)
