"""CockroachDB SQL constructs: AS OF SYSTEM TIME and index hints.

Each construct compiles with this package's dialect (``cockroachdb+asyncpg``
etc.) on either server. On CockroachDB it renders CockroachDB's syntax; on
PostgreSQL a CockroachDB-only construct raises a :class:`~sqlalchemy.exc.CompileError`
that says what to do instead.

AS OF SYSTEM TIME (a historical, lock-free read;
https://www.cockroachlabs.com/docs/stable/as-of-system-time). A statement
with the clause must run in an *implicit* transaction, i.e. on an
``AUTOCOMMIT`` connection: inside ``BEGIN`` CockroachDB refuses it ("inconsistent
AS OF SYSTEM TIME timestamp", "cannot use a bounded staleness query in a
transaction": cockroach pkg/sql/conn_executor_exec.go,
https://github.com/cockroachdb/cockroach/issues/40204 is this failure from
SQLAlchemy, which always begins a transaction)::

    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        stmt = as_of_system_time(select(accounts), "-10s")
        stmt = as_of_system_time(select(accounts), follower_read_timestamp())
        stmt = as_of_system_time(select(accounts), with_max_staleness("10s"))
        rows = (await conn.execute(stmt)).all()

Several reads at one past time, in one explicit transaction: make
:func:`set_transaction_as_of_system_time` its first statement and leave the
clause off the reads (bounded staleness, :func:`with_max_staleness`, is not
allowed there: only as a single statement on an AUTOCOMMIT connection)::

    async with engine.connect() as conn, conn.begin():
        await conn.execute(set_transaction_as_of_system_time("-10s"))
        rows = (await conn.execute(select(accounts))).all()

Executing an ``as_of_system_time()`` statement in a transaction raises
:class:`~sqlalchemy_crdb_async.AsOfSystemTimeError` before anything is sent.

The clause goes at the end of the FROM list, where CockroachDB's grammar puts
it. Values: a negative interval string (``"-4h"``), a :class:`datetime.datetime`,
a negative :class:`datetime.timedelta` (written in exact seconds, e.g.
``'-1036800s'``), an ``int`` (nanoseconds since the epoch), or the two
functions above. Not allowed with ``FOR UPDATE`` (the server refuses locking
reads at a past timestamp), and only on the statement itself: a select with
the clause inside a subquery, a CTE, a UNION arm or ``INSERT ... SELECT``
raises ``CompileError`` naming the place, as CockroachDB refuses it there
("AS OF SYSTEM TIME must be provided on a top-level statement"). The clause on
the outermost select covers every table the statement reads.

Index hints
(https://www.cockroachlabs.com/docs/stable/table-expressions#force-index-selection)::

    select(t).with_hint(t, *index_hint("t_b_idx"))  # FROM t@t_b_idx
    select(t).with_hint(t, *index_hint("t_b_idx", force=True))
    # FROM t@{FORCE_INDEX=t_b_idx}

:func:`index_hint` returns the ``(text, dialect_name)`` pair that ``with_hint``
takes after the table, hence the ``*``. An aliased table keeps its alias
(``FROM t@i AS x``). The older ``sqlalchemy-cockroachdb`` form
``with_hint(t, "t_b_idx")`` renders the same on CockroachDB (the text follows
the ``@`` verbatim); on PostgreSQL it raises ``CompileError`` naming
:func:`index_hint`.

UPSERT is in :mod:`.dml`; ``timestampdiff``, ``unique_rowid`` and
``uuid_primary_key`` are in :mod:`.functions`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import exc
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.selectable import TableClause

from ._compiling import DIALECT_NAME, crdb_only, is_crdb

__all__ = [
    "AS_OF_SYSTEM_TIME",
    "as_of_system_time",
    "follower_read_timestamp",
    "index_hint",
    "set_transaction_as_of_system_time",
    "with_max_staleness",
]

#: Statement hints starting with this are AS OF SYSTEM TIME clauses.
AS_OF_SYSTEM_TIME = "AS OF SYSTEM TIME "
_SIMPLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


# -- AS OF SYSTEM TIME ---------------------------------------------------------


class _Staleness(str):
    """SQL text of a follower-read function; made by the functions below."""


def follower_read_timestamp() -> _Staleness:
    """``follower_read_timestamp()``: an exact-staleness follower read.

    A value for :func:`as_of_system_time` (CockroachDB only): a timestamp a few
    seconds in the past that any replica can serve
    (https://www.cockroachlabs.com/docs/stable/follower-reads). Retries
    nothing, raises nothing.

    Example (CockroachDB)::

        stmt = as_of_system_time(select(accounts), follower_read_timestamp())
        async with engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
    """
    return _Staleness("follower_read_timestamp()")


def with_max_staleness(
    interval: str | dt.timedelta, nearest_only: bool = False
) -> _Staleness:
    """``with_max_staleness(INTERVAL)``: a bounded-staleness read.

    A value for :func:`as_of_system_time` (CockroachDB only, with the limits
    of bounded-staleness reads:
    https://www.cockroachlabs.com/docs/stable/follower-reads): ``interval`` is
    a positive interval string (``"10s"``) or timedelta; ``nearest_only=True``
    reads only from the nearest replica.
    Retries nothing. Raises ``ArgumentError`` for an empty or non-positive
    interval.

    Example (CockroachDB)::

        stmt = as_of_system_time(
            select(accounts).where(accounts.c.id == 1), with_max_staleness("10s")
        )
        async with engine.connect() as conn:
            row = (await conn.execute(stmt)).one()
    """
    if isinstance(interval, dt.timedelta):
        if interval <= dt.timedelta(0):
            raise exc.ArgumentError(
                f"with_max_staleness() needs a positive interval, got {interval!r}"
            )
        interval = _seconds(interval)
    if not isinstance(interval, str) or not interval.strip():
        raise exc.ArgumentError(
            f"with_max_staleness() takes an interval like '10s', got {interval!r}"
        )
    args = _quote(interval) + ("::INTERVAL, true" if nearest_only else "::INTERVAL")
    return _Staleness(f"with_max_staleness({args})")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _seconds(value: dt.timedelta) -> str:
    """An exact interval in seconds: ``-1036800s``, ``-0.000001s``, never an
    exponent (``:g`` gave ``-1.0368e+06s``)."""
    micros = value // dt.timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return f"{sign}{text}s"


def is_bounded_staleness(clause: str) -> bool:
    """True for an AS OF SYSTEM TIME clause with a bounded-staleness function."""
    return "with_max_staleness(" in clause or "with_min_timestamp(" in clause


def _aost_sql(value: Any) -> str:
    if isinstance(value, _Staleness):
        return str(value)
    if isinstance(value, bool):
        pass  # bool is an int; refused below
    elif isinstance(value, int):
        return str(value)  # nanoseconds since the epoch
    elif isinstance(value, dt.datetime):
        return _quote(value.isoformat(sep=" "))
    elif isinstance(value, dt.timedelta):
        if value >= dt.timedelta(0):
            raise exc.ArgumentError(
                "AS OF SYSTEM TIME needs a time in the past: give a negative "
                f"timedelta, got {value!r}"
            )
        return _quote(_seconds(value))
    elif isinstance(value, str) and value.strip():
        return _quote(value.strip())
    raise exc.ArgumentError(
        "as_of_system_time() takes a negative interval string ('-10s'), a "
        "datetime, a negative timedelta, nanoseconds as int, "
        f"follower_read_timestamp() or with_max_staleness(); got {value!r}"
    )


def as_of_system_time(stmt: Select[Any], value: Any) -> Select[Any]:
    """``stmt`` reading the data as of ``value``: a historical, lock-free read.

    Accepts a ``select()`` and one of: a negative interval string (``"-10s"``),
    a :class:`datetime.datetime`, a negative :class:`datetime.timedelta`, an
    ``int`` (nanoseconds since the epoch), :func:`follower_read_timestamp` or
    :func:`with_max_staleness`. Renders ``AS OF SYSTEM TIME <value>`` at the
    end of the FROM list. Retries nothing. Raises ``ArgumentError`` for another
    statement or value; at compile time ``CompileError`` on PostgreSQL (the
    message says what to do instead) or combined with ``FOR UPDATE``.
    CockroachDB only: https://www.cockroachlabs.com/docs/stable/as-of-system-time

    Example (CockroachDB)::

        from sqlalchemy import select

        from sqlalchemy_crdb_async import as_of_system_time

        stmt = as_of_system_time(select(accounts), "-10s")
        async with engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
    """
    if not isinstance(stmt, Select):
        raise exc.ArgumentError(
            f"as_of_system_time() applies to a select(), got {type(stmt).__name__}"
        )
    return stmt.with_statement_hint(AS_OF_SYSTEM_TIME + _aost_sql(value), DIALECT_NAME)


class SetTransactionAsOf(Executable, ClauseElement):
    """``SET TRANSACTION AS OF SYSTEM TIME ...``; made by
    :func:`set_transaction_as_of_system_time`."""

    __visit_name__ = "crdb_set_transaction_as_of"
    inherit_cache = False

    def __init__(self, clause: str) -> None:
        self.clause = clause


def set_transaction_as_of_system_time(value: Any) -> SetTransactionAsOf:
    """The first statement of a transaction that reads as of ``value``.

    Takes the values :func:`as_of_system_time` takes, except
    :func:`with_max_staleness` (CockroachDB allows bounded staleness only in a
    single-statement implicit transaction).
    """
    sql = _aost_sql(value)
    if is_bounded_staleness(sql):
        raise exc.ArgumentError(
            "with_max_staleness() cannot be used in a transaction on CockroachDB: "
            "use as_of_system_time(select(...), with_max_staleness(...)) on a "
            "connection with execution_options(isolation_level='AUTOCOMMIT')"
        )
    return SetTransactionAsOf(AS_OF_SYSTEM_TIME + sql)


@compiles(SetTransactionAsOf)
def _compile_set_transaction_as_of(
    element: SetTransactionAsOf, compiler: Any, **kw: Any
) -> str:
    if not is_crdb(compiler):
        raise crdb_only(
            "SET TRANSACTION AS OF SYSTEM TIME",
            "use a REPEATABLE READ transaction to read one snapshot on PostgreSQL",
        )
    return "SET TRANSACTION " + element.clause


def refuse_in_transaction(clause: str) -> None:
    """Raise :class:`.AsOfSystemTimeError` for ``clause`` run inside BEGIN."""
    from ..errors import AsOfSystemTimeError

    fix = "run it on a connection with execution_options(isolation_level='AUTOCOMMIT')"
    if is_bounded_staleness(clause):
        refusal = "cannot use a bounded staleness query in a transaction"
    else:
        refusal = "inconsistent AS OF SYSTEM TIME timestamp"
        fix += (
            ", or make set_transaction_as_of_system_time(...) the first statement "
            "of the transaction and drop as_of_system_time() from its statements"
        )
    raise AsOfSystemTimeError(
        f"{clause!r} would run inside a transaction, which CockroachDB refuses "
        f"({refusal!r}): {fix}."
    )


def not_top_level(clause: str, place: str) -> exc.CompileError:
    """The error for ``clause`` on a select that is not the statement itself."""
    # CockroachDB refuses the clause anywhere but on the top-level statement:
    # "AS OF SYSTEM TIME must be provided on a top-level statement", SQLSTATE
    # 42601 (cockroach pkg/sql/opt/optbuilder/select.go, validateAsOf;
    # tests/crdb_facts/errors_batch3.json 42601_aost_not_top_level).
    if "INSERT" in place:
        fix = (
            "A write cannot read at a past time: read the rows first with "
            "as_of_system_time(select(...)) on an AUTOCOMMIT connection, then "
            "insert them."
        )
    else:
        fix = (
            "Apply as_of_system_time() to the outermost select() instead: it "
            "then covers every table the statement reads, subqueries and CTEs "
            "included. (SQLAlchemy's ORM itself moves an ORM select with "
            "joinedload() and LIMIT/OFFSET into a subquery: use selectinload() "
            "for such a read.)"
        )
    return exc.CompileError(
        f"{clause!r} is on a select inside {place}; CockroachDB accepts AS OF "
        "SYSTEM TIME only on the top-level statement ('AS OF SYSTEM TIME must "
        f"be provided on a top-level statement', SQLSTATE 42601). {fix}"
    )


class AsOfFrom(ClauseElement):
    """The last FROM element followed by AS OF SYSTEM TIME (compiler internal)."""

    __visit_name__ = "crdb_as_of_from"
    inherit_cache = False

    def __init__(self, inner: Any, clause: str) -> None:
        self.inner = inner
        self.clause = clause

    def _compiler_dispatch(self, visitor: Any, **kw: Any) -> str:
        return f"{self.inner._compiler_dispatch(visitor, **kw)} {self.clause}"


def split_aost_hints(hints: Any, dialect_name: str) -> tuple[list[str], list[str]]:
    """``(AS OF SYSTEM TIME clauses, other hints)`` of a select's statement hints."""
    aost, other = [], []
    for name, hint in hints:
        if name in ("*", dialect_name) and hint.startswith(AS_OF_SYSTEM_TIME):
            aost.append(hint)
        elif name in ("*", dialect_name):
            other.append(hint)
    return aost, other


# -- index hints ---------------------------------------------------------------


def index_hint(
    index: str, *, force: bool = False, direction: str | None = None
) -> tuple[str, str]:
    """``with_hint`` arguments for ``table@index`` / ``table@{FORCE_INDEX=...}``.

    Accepts an index name, ``force=True`` for ``@{FORCE_INDEX=name}`` and
    ``direction="ASC"``/``"DESC"`` (implies force). Returns the
    ``(text, "cockroachdb")`` pair that ``Select.with_hint(table, ...)`` takes
    after the table, hence the ``*``. Retries nothing. Raises
    ``ArgumentError`` for an empty name or another direction; at compile time
    ``CompileError`` on PostgreSQL, which chooses indexes itself.
    CockroachDB only:
    https://www.cockroachlabs.com/docs/stable/table-expressions#force-index-selection

    Example (CockroachDB)::

        from sqlalchemy import select

        from sqlalchemy_crdb_async import index_hint

        stmt = select(accounts).with_hint(accounts, *index_hint("accounts_pkey"))
        async with engine.connect() as conn:  # FROM accounts@accounts_pkey
            rows = (await conn.execute(stmt)).all()
    """
    if not index or not isinstance(index, str):
        raise exc.ArgumentError(f"index_hint() needs an index name, got {index!r}")
    name = index if _SIMPLE_NAME.match(index) else '"' + index.replace('"', '""') + '"'
    if direction is not None:
        if direction.upper() not in ("ASC", "DESC"):
            raise exc.ArgumentError(
                f"index_hint(direction=...) is 'ASC' or 'DESC', got {direction!r}"
            )
        force = True
    if force:
        suffix = f",{direction.upper()}" if direction else ""
        return f"@{{FORCE_INDEX={name}{suffix}}}", DIALECT_NAME
    return f"@{name}", DIALECT_NAME


def render_index_hint(compiler: Any, sqltext: str, table: Any, hint: str) -> str:
    """``table@hint`` (an alias keeps its name after the hint)."""
    if not is_crdb(compiler):
        raise crdb_only(
            f"index hint {hint!r}", "PostgreSQL chooses indexes itself; drop the hint"
        )
    if isinstance(table, TableClause):
        return sqltext + hint
    element = getattr(table, "element", None)
    if isinstance(element, TableClause):
        base = compiler.preparer.format_table(element)
        return f"{base}{hint} AS {compiler.preparer.format_alias(table)}"
    raise exc.CompileError(f"an index hint applies to a table, not {table!r}")


def render_bare_index_hint(compiler: Any, sqltext: str, table: Any, hint: str) -> str:
    """``with_hint(t, "ix")`` as the older package wrote it: ``t@ix`` on
    CockroachDB; on PostgreSQL an error naming :func:`index_hint`."""
    if not hint.strip():
        raise exc.CompileError("with_hint() was given an empty index hint")
    if not is_crdb(compiler):
        name = getattr(table, "name", "t")
        raise crdb_only(
            f"with_hint({name}, {hint!r}) (an index hint in the older "
            "sqlalchemy-cockroachdb form, rendered table@index on CockroachDB)",
            "PostgreSQL has no index hints. Write it as "
            f"with_hint({name}, *index_hint({hint!r})) from sqlalchemy_crdb_async "
            "and leave it out of statements that run on PostgreSQL.",
        )
    return render_index_hint(compiler, sqltext, table, "@" + hint.strip())
