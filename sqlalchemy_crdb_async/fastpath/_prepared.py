"""``prepared(statement)`` and the :class:`PreparedQuery` it returns (internal;
the manual is the package docstring, :mod:`sqlalchemy_crdb_async.fastpath`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import exc
from sqlalchemy.engine import Row

from ._compile import check_statement, compile_plan
from ._driver import rowcount
from ._targets import check_driver, run

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect

    from ._compile import Plan
    from ._targets import Target

__all__ = ["PreparedQuery", "prepared"]


def prepared(statement: Any) -> PreparedQuery:
    """A Core select, insert, update or delete to run on the fast path.

    Build it once (at import time, say) and run it with keyword parameters
    named by its ``bindparam()`` s::

        by_id = prepared(select(accounts).where(accounts.c.id == bindparam("id")))
        row = await by_id.one(engine, id=7)

    Raises :class:`~sqlalchemy_crdb_async.errors.FastPathError` at once for a
    statement the fast path cannot run (see
    :mod:`sqlalchemy_crdb_async.fastpath`).
    """
    return PreparedQuery(statement)


class PreparedQuery:
    """A statement compiled once per dialect and run as a driver prepared
    statement; ``target`` is an ``AsyncEngine``, ``AsyncConnection`` or
    ``AsyncSession`` (see :mod:`sqlalchemy_crdb_async.fastpath`)."""

    __slots__ = ("_plans", "statement")

    def __init__(self, statement: Any) -> None:
        check_statement(statement)
        #: The Core statement this runs.
        self.statement = statement
        self._plans: dict[int, tuple[Dialect, Plan]] = {}

    def __repr__(self) -> str:
        return f"prepared({self.statement!r})"

    def plan_for(self, dialect: Dialect) -> Plan:
        """The statement compiled for ``dialect`` (once; kept while it lives)."""
        found = self._plans.get(id(dialect))
        if found is not None and found[0] is dialect:
            return found[1]
        check_driver(dialect)
        plan = compile_plan(self.statement, dialect)
        self._plans[id(dialect)] = (dialect, plan)
        return plan

    async def all(self, target: Target, /, **params: Any) -> list[Row[Any]]:
        """Every row."""
        plan, records, processors, _ = await run(
            target, self.plan_for, params, self.statement
        )
        metadata = plan.metadata
        index = metadata._key_to_index
        return [Row(metadata, processors, index, r) for r in records]

    async def first(self, target: Target, /, **params: Any) -> Row[Any] | None:
        """The first row, or None."""
        plan, records, processors, _ = await run(
            target, self.plan_for, params, self.statement
        )
        if not records:
            return None
        metadata = plan.metadata
        return Row(metadata, processors, metadata._key_to_index, records[0])

    async def one(self, target: Target, /, **params: Any) -> Row[Any]:
        """Exactly one row; else ``NoResultFound`` or ``MultipleResultsFound``."""
        plan, records, processors, _ = await run(
            target, self.plan_for, params, self.statement
        )
        if not records:
            raise exc.NoResultFound("No row was found when one was required")
        if len(records) > 1:
            raise exc.MultipleResultsFound(
                "Multiple rows were found when exactly one was required"
            )
        metadata = plan.metadata
        return Row(metadata, processors, metadata._key_to_index, records[0])

    async def one_or_none(self, target: Target, /, **params: Any) -> Row[Any] | None:
        """One row or None; ``MultipleResultsFound`` for more."""
        plan, records, processors, _ = await run(
            target, self.plan_for, params, self.statement
        )
        if not records:
            return None
        if len(records) > 1:
            raise exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        metadata = plan.metadata
        return Row(metadata, processors, metadata._key_to_index, records[0])

    async def scalar(self, target: Target, /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        _, records, processors, _ = await run(
            target, self.plan_for, params, self.statement
        )
        if not records:
            return None
        value = records[0][0]
        if processors is not None and processors[0] is not None:
            value = processors[0](value)
        return value

    async def scalars(self, target: Target, /, **params: Any) -> list[Any]:
        """The first column of every row (a list)."""
        _, records, processors, _ = await run(
            target, self.plan_for, params, self.statement
        )
        processor = processors[0] if processors is not None else None
        if processor is None:
            return [r[0] for r in records]
        return [processor(r[0]) for r in records]

    async def execute(self, target: Target, /, **params: Any) -> int:
        """Run a write; the number of rows it touched (-1 when the server did
        not say). Rows of a ``RETURNING`` come from the read methods instead."""
        _, _, _, count = await run(target, self.plan_for, params, self.statement)
        return rowcount(count)
