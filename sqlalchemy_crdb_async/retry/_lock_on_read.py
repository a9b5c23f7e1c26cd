"""Lock on read for ``retrying_session`` (internal).

:func:`lock_reads` is a ``do_orm_execute`` hook that adds ``FOR UPDATE OF
<tables>`` to the plain ``select()`` statements of a retrying session, so a
read-modify-write conflict surfaces at the read, before the block has seen
stale data (CockroachDB recommends it for read-modify-write:
https://www.cockroachlabs.com/docs/stable/select-for-update). See "Lock on
read" in :mod:`.replay`.

Never in a read-only transaction: CockroachDB and PostgreSQL refuse a locking
read there (25006 "cannot execute SELECT FOR UPDATE in a read-only
transaction"; tests/crdb_facts/errors_batch3.json ``25006_read_only``, from
https://github.com/cockroachdb/cockroach/pull/51335). :func:`lock_reads`
leaves a statement alone when it reads ``as_of_system_time(...)`` (a past
timestamp makes its transaction read-only, and the compiler refuses the
combination), when the connection begins its transactions ``READ ONLY``
(``execution_options(postgresql_readonly=True)``), and once the session ran
a statement :func:`makes_read_only` recognises (``SET TRANSACTION AS OF
SYSTEM TIME`` from ``set_transaction_as_of_system_time()``, ``SET
TRANSACTION READ ONLY``, ``SET transaction_read_only = on``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Select, Table
from sqlalchemy.sql.elements import Label

from ..dialect.constructs import AS_OF_SYSTEM_TIME

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.orm import ORMExecuteState

__all__ = [
    "can_lock",
    "check_lock_on_read",
    "lock_reads",
    "lockable_tables",
    "makes_read_only",
]

# The SQL we send that makes the rest of the transaction read-only: the
# statement of set_transaction_as_of_system_time() (dialect/constructs.py) and
# the standard READ ONLY switches (both servers' grammar; the statement text
# is our own, not a server message).
_READ_ONLY_SQL = re.compile(
    r"""^\s*SET\s+(?:
        TRANSACTION\b.*\b(?:AS\s+OF\s+SYSTEM\s+TIME|READ\s+ONLY)\b
      | (?:LOCAL\s+|SESSION\s+)?transaction_read_only\s*(?:=|\bTO\b)\s*'?(?:on|true)\b
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def makes_read_only(sql: str) -> bool:
    """True when ``sql`` makes the rest of its transaction read-only."""
    return _READ_ONLY_SQL.match(sql) is not None


def _reads_as_of(statement: Select[Any]) -> bool:
    return any(
        hint.startswith(AS_OF_SYSTEM_TIME) for _, hint in statement._statement_hints
    )


def lockable_tables(statement: Any) -> list[Table] | None:
    """The tables ``FOR UPDATE OF`` may lock in ``statement``, or None.

    Only a plain ``select()`` qualifies: every FROM a table, every column a
    table column, no GROUP BY, HAVING, DISTINCT or existing lock clause (the
    SQL where PostgreSQL and CockroachDB accept a locking clause).
    """
    if not isinstance(statement, Select) or statement._for_update_arg is not None:
        return None
    if _reads_as_of(statement):
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


def check_lock_on_read(value: object) -> None:
    """Refuse a ``lock_on_read`` that is not a bool (``ValueError``)."""
    if not isinstance(value, bool):
        raise ValueError(
            f"retrying_session(): lock_on_read must be True or False, got {value!r}"
        )


def can_lock(dialect: Dialect) -> bool:
    # CockroachDB has SELECT ... FOR UPDATE since v20.1
    # (https://www.cockroachlabs.com/docs/v20.1/select-for-update, "New in v20.1").
    if not getattr(dialect, "is_cockroachdb", False):
        return True
    at_least = getattr(dialect, "crdb_at_least", None)
    return bool(at_least(20, 1)) if callable(at_least) else False


def lock_reads(state: ORMExecuteState, *, read_only: bool = False) -> bool:
    """``do_orm_execute`` hook: lock the rows a retrying session reads.

    ``read_only``: the caller knows the transaction is read-only. Returns
    whether it added ``FOR UPDATE``.
    """
    if not state.is_select or read_only or _read_only_connection(state):
        return False
    tables = lockable_tables(state.statement)
    if tables is None:
        return False
    state.statement = state.statement.with_for_update(of=tables)  # type: ignore[attr-defined]
    return True


def _read_only_connection(state: ORMExecuteState) -> bool:
    """The session's connection begins its transactions READ ONLY."""
    if state.execution_options.get("postgresql_readonly"):
        return True
    bind = state.session.get_bind()
    options = bind.get_execution_options()
    return bool(options.get("postgresql_readonly"))
