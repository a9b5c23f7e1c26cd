"""The workload registry: one module per workload, scenarios registered on it.

A workload module builds one :class:`Workload` and registers a scenario per
(variant, API) pair with the :meth:`Workload.scenario` decorator, as
SQLAlchemy's ``examples/performance`` suite does: the decorated coroutine is
*one operation* and its docstring's first line is the label the report shows::

    workload = Workload("point_read", __doc__, setup=_setup)

    @workload.scenario("asyncpg", "fetchrow", reference=True)
    async def raw(ctx: Ctx) -> None:
        \"\"\"pool.fetchrow by primary key\"\"\"
        await ctx.pool.fetchrow(SQL, ctx.rng.randint(1, ROWS))

The runner (:mod:`benchmarks._harness.runner`) opens the scenario's variant
(:mod:`benchmarks._harness.variants`) for every cell, hands the operation a :class:`Ctx`
and calls it from ``concurrency`` tasks until the cell's time is up
(``mode="duration"``), or launches ``storm_tasks`` operations at once on a
fixed-size pool (``mode="storm"``).

``requires`` names what a scenario needs that may be missing (the retry
helpers before their branch is merged, say): a callable returning ``None``
when all is there, else the reason, which the report prints instead of
numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import random

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "BenchmarkInvariantError",
    "Ctx",
    "Scenario",
    "Workload",
    "all_workloads",
]

Mode = Literal["duration", "storm"]


class BenchmarkInvariantError(AssertionError):
    """A workload's end-of-cell check failed (the bank lost or made money)."""


@dataclass
class Ctx:
    """What one operation gets: the variant's handle, a random source, counters."""

    #: An ``asyncpg.Pool`` (raw asyncpg variants) or an ``AsyncEngine``.
    handle: Any
    rng: random.Random
    #: Retries (attempts beyond the first) across all operations of the cell.
    retries: int = 0
    #: SQLSTATE of every retried error, counted.
    sqlstates: Counter[str] = field(default_factory=Counter)
    #: Operations that gave up (an error reached the caller).
    errors: int = 0
    #: Scenario-specific state made by ``prepare`` (a RetryPolicy, say).
    extra: dict[str, Any] = field(default_factory=dict)
    _sessionmaker: async_sessionmaker[AsyncSession] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        return self.handle

    @property
    def engine(self) -> AsyncEngine:
        return self.handle  # type: ignore[no-any-return]

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            self._sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._sessionmaker

    def record_retry(self, sqlstate: str | None) -> None:
        self.retries += 1
        self.sqlstates[sqlstate or "unknown"] += 1

    def reset_counters(self) -> None:
        self.retries = 0
        self.errors = 0
        self.sqlstates.clear()


Op = Callable[[Ctx], Awaitable[None]]
Setup = Callable[["asyncpg.Connection"], Awaitable[None]]
Hook = Callable[["asyncpg.Connection"], Awaitable[None]]
Requires = Callable[[], "str | None"]


@dataclass(frozen=True)
class Scenario:
    """One (workload, variant, API) row of the report."""

    workload: str
    variant: str
    api: str
    op: Op
    label: str
    reference: bool = False
    requires: Requires | None = None
    prepare: Callable[[Ctx], Awaitable[None]] | None = None
    #: Called after warm-up and after the timed run, for counters kept elsewhere.
    started: Callable[[Ctx], Awaitable[None]] | None = None
    finished: Callable[[Ctx], Awaitable[None]] | None = None

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.variant}/{self.api}"

    def unavailable_reason(self) -> str | None:
        return self.requires() if self.requires is not None else None


class Workload:
    """A workload: schema, data, scenarios, and the check run after every cell."""

    def __init__(
        self,
        name: str,
        doc: str | None,
        *,
        setup: Setup,
        mode: Mode = "duration",
        before_cell: Hook | None = None,
        check: Hook | None = None,
        retries: bool = False,
    ) -> None:
        self.name = name
        #: Whether the report shows retries per commit and SQLSTATEs.
        self.retries = retries
        self.title = (doc or name).strip().splitlines()[0]
        self.doc = (doc or "").strip()
        self.mode: Mode = mode
        self.setup = setup
        self.before_cell = before_cell
        self.check = check
        self.scenarios: list[Scenario] = []

    def scenario(
        self,
        variant: str,
        api: str,
        *,
        reference: bool = False,
        requires: Requires | None = None,
        prepare: Callable[[Ctx], Awaitable[None]] | None = None,
        started: Callable[[Ctx], Awaitable[None]] | None = None,
        finished: Callable[[Ctx], Awaitable[None]] | None = None,
    ) -> Callable[[Op], Op]:
        """Register the decorated coroutine as one operation of this workload."""

        def register(op: Op) -> Op:
            label = (op.__doc__ or op.__name__).strip().splitlines()[0]
            if any(s.variant == variant and s.api == api for s in self.scenarios):
                raise ValueError(f"{self.name}: {variant}/{api} registered twice")
            self.scenarios.append(
                Scenario(
                    self.name,
                    variant,
                    api,
                    op,
                    label,
                    reference,
                    requires,
                    prepare,
                    started,
                    finished,
                )
            )
            return op

        return register

    @property
    def reference(self) -> Scenario:
        for s in self.scenarios:
            if s.reference:
                return s
        raise LookupError(f"workload {self.name} has no reference scenario")


def all_workloads() -> dict[str, Workload]:
    """Every workload, by name, in report order."""
    from . import (
        bank,
        checkout_storm,
        fastapi_read,
        fastapi_transfer,
        insert_batch,
        knn,
        point_read,
        pool_checkout,
    )

    workloads = {
        w.name: w
        for w in (
            point_read.workload,
            insert_batch.workload,
            bank.workload,
            bank.hot_workload,
            checkout_storm.workload,
            pool_checkout.workload,
            fastapi_read.workload,
            fastapi_transfer.workload,
            fastapi_transfer.hot_workload,
            knn.workload,
        )
    }
    from ._fastpath import register

    register(workloads)  # the prepared fast path's rows (once; idempotent)
    return workloads
