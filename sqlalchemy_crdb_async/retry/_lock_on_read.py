"""Lock on read for ``retrying_session`` (internal).

:func:`lock_reads` is a ``do_orm_execute`` hook that adds ``FOR UPDATE OF
<tables>`` to the plain ``select()`` statements of a retrying session, so a
read-modify-write conflict surfaces at the read, before the block has seen
stale data (CockroachDB recommends it for read-modify-write:
https://www.cockroachlabs.com/docs/stable/select-for-update). See "Lock on
read" in :mod:`.replay`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Select, Table
from sqlalchemy.sql.elements import Label

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.orm import ORMExecuteState

__all__ = ["can_lock", "lock_reads", "lockable_tables"]


def lockable_tables(statement: Any) -> list[Table] | None:
    """The tables ``FOR UPDATE OF`` may lock in ``statement``, or None.

    Only a plain ``select()`` qualifies: every FROM a table, every column a
    table column, no GROUP BY, HAVING, DISTINCT or existing lock clause (the
    SQL where PostgreSQL and CockroachDB accept a locking clause).
    """
    if not isinstance(statement, Select) or statement._for_update_arg is not None:
        return None
    if (
        statement._group_by_clauses
        or statement._having_criteria
        or statement._distinct
        or statement._distinct_on
    ):
        return None
    froms = statement.get_final_froms()
    if not froms or not all(isinstance(f, Table) for f in froms):
        return None
    for column in statement.selected_columns:
        while isinstance(column, Label):
            column = column.element
        if not isinstance(column, Column):
            return None
    return list(froms)  # type: ignore[arg-type]


def can_lock(dialect: Dialect) -> bool:
    # CockroachDB has SELECT ... FOR UPDATE since v20.1
    # (https://www.cockroachlabs.com/docs/v20.1/select-for-update, "New in v20.1").
    if not getattr(dialect, "is_cockroachdb", False):
        return True
    at_least = getattr(dialect, "crdb_at_least", None)
    return bool(at_least(20, 1)) if callable(at_least) else False


def lock_reads(state: ORMExecuteState) -> None:
    """``do_orm_execute`` hook: lock the rows a retrying session reads."""
    if state.is_select:
        tables = lockable_tables(state.statement)
        if tables is not None:
            state.statement = state.statement.with_for_update(of=tables)  # type: ignore[attr-defined]
