"""CockroachDB SQL constructs: UPSERT, AS OF SYSTEM TIME, index hints, and helpers.

Each construct compiles with this package's dialect (``cockroachdb+asyncpg``
etc.) on either server. On CockroachDB it renders CockroachDB's syntax; on
PostgreSQL a CockroachDB-only construct raises a :class:`~sqlalchemy.exc.CompileError`
that says what to do instead, except :func:`upsert`, which has an exact
PostgreSQL equivalent.

UPSERT (https://www.cockroachlabs.com/docs/v23.2/upsert)::

    from sqlalchemy_crdb_async import upsert

    await conn.execute(upsert(accounts).values(id=1, balance=100))
    # CockroachDB:  UPSERT INTO accounts (id, balance) VALUES ($1, $2)
    # PostgreSQL:   INSERT INTO accounts (id, balance) VALUES ($1, $2)
    #               ON CONFLICT (id) DO UPDATE SET balance = excluded.balance

``UPSERT`` always uses the primary key as the arbiter and updates only the
columns given, which is what the PostgreSQL form spells out.

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
reads at a past timestamp).

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

Also: :func:`timestampdiff` (whole units between two timestamps, as MySQL's
and the older package's, exact to the microsecond; ``func.timestampdiff(...)``
builds it too), :func:`unique_rowid` (CockroachDB's SERIAL default),
:func:`uuid_primary_key` (a ``UUID`` primary key defaulting to
``gen_random_uuid()``, which both servers have).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import Column, exc, text
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.postgresql import Insert as PGInsert
from sqlalchemy.dialects.postgresql.dml import OnConflictDoNothing, OnConflictDoUpdate
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import BindParameter, ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement, GenericFunction
from sqlalchemy.sql.selectable import TableClause
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = [
    "AS_OF_SYSTEM_TIME",
    "Upsert",
    "as_of_system_time",
    "follower_read_timestamp",
    "index_hint",
    "set_transaction_as_of_system_time",
    "timestampdiff",
    "unique_rowid",
    "upsert",
    "uuid_primary_key",
    "with_max_staleness",
]

DIALECT_NAME = "cockroachdb"
#: Statement hints starting with this are AS OF SYSTEM TIME clauses.
AS_OF_SYSTEM_TIME = "AS OF SYSTEM TIME "
_SIMPLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _is_crdb(compiler: Any) -> bool:
    return bool(getattr(compiler.dialect, "is_cockroachdb", False))


def _crdb_only(what: str, instead: str) -> exc.CompileError:
    return exc.CompileError(
        f"{what} is CockroachDB-only and this server is PostgreSQL; {instead}"
    )


# -- UPSERT --------------------------------------------------------------------


class Upsert(PGInsert):
    """``UPSERT INTO`` on CockroachDB; ``INSERT ... ON CONFLICT (pk) DO UPDATE``
    on PostgreSQL. Made by :func:`upsert`."""

    inherit_cache = True


def upsert(table: Any) -> Upsert:
    """An UPSERT into ``table`` (a Table or mapped class); use like ``insert()``.

    Accepts what ``insert()`` accepts, then ``.values(...)`` and
    ``.returning(...)``. On CockroachDB it renders ``UPSERT INTO``, which uses
    the primary key as the arbiter; on PostgreSQL
    ``INSERT ... ON CONFLICT (<primary key>) DO UPDATE`` of the given columns,
    the same meaning. It is a statement, so it retries nothing (run it in
    :func:`.run_transaction` for that). Raises ``CompileError`` if the table
    has no primary key, or if ``on_conflict_*`` is added (UPSERT has its own).

    Example::

        from sqlalchemy_crdb_async import upsert

        async with engine.begin() as conn:
            await conn.execute(upsert(accounts).values(id=1, balance=100))
            await conn.execute(upsert(accounts).values(id=1, balance=90))
    """
    return Upsert(table)


@compiles(Upsert, DIALECT_NAME)
@compiles(Upsert, "postgresql")
def _compile_upsert(element: Upsert, compiler: Any, **kw: Any) -> str:
    if element._post_values_clause is not None:
        raise exc.CompileError(
            "upsert() takes no on_conflict_* clause: UPSERT always resolves "
            "conflicts on the primary key. Use postgresql insert() for others."
        )
    table = element.table
    pk = list(table.primary_key) if hasattr(table, "primary_key") else []
    if not pk:
        raise exc.CompileError(
            f"upsert() into {table.name!r}: the table has no primary key, and "
            "UPSERT resolves conflicts on the primary key."
        )
    if _is_crdb(compiler):
        if element._independent_ctes or getattr(compiler, "ctes", None):
            raise exc.CompileError("upsert() does not support CTEs on CockroachDB")
        sql = str(compiler.visit_insert(element, **kw))
        if not sql.startswith("INSERT INTO"):
            raise exc.CompileError(f"cannot turn into UPSERT: {sql[:60]!r}")
        return "UPSERT" + sql[len("INSERT") :]
    # PostgreSQL: the same meaning, spelled with ON CONFLICT on the primary key
    pk_keys = {c.key for c in pk}
    keys = _inserted_keys(element, compiler) or [c.key for c in table.columns]
    updates = [k for k in keys if k not in pk_keys and k in table.columns]
    twin = PGInsert.__new__(PGInsert)
    twin.__dict__.update(element.__dict__)
    if updates:
        excluded = element.excluded
        twin._post_values_clause = OnConflictDoUpdate(
            index_elements=pk, set_={k: excluded[k] for k in updates}
        )
    else:
        twin._post_values_clause = OnConflictDoNothing(index_elements=pk)
    return str(compiler.visit_insert(twin, **kw))


def _inserted_keys(element: Upsert, compiler: Any) -> list[str]:
    if element._multi_values:
        return [c if isinstance(c, str) else c.key for c in element._multi_values[0][0]]
    if element._values:
        return [c if isinstance(c, str) else c.key for c in element._values]
    if element.select is not None and element._select_names:
        return [c if isinstance(c, str) else c.key for c in element._select_names]
    return list(compiler.column_keys or [])


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
    if not _is_crdb(compiler):
        raise _crdb_only(
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
    if not _is_crdb(compiler):
        raise _crdb_only(
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
    if not _is_crdb(compiler):
        name = getattr(table, "name", "t")
        raise _crdb_only(
            f"with_hint({name}, {hint!r}) (an index hint in the older "
            "sqlalchemy-cockroachdb form, rendered table@index on CockroachDB)",
            "PostgreSQL has no index hints. Write it as "
            f"with_hint({name}, *index_hint({hint!r})) from sqlalchemy_crdb_async "
            "and leave it out of statements that run on PostgreSQL.",
        )
    return render_index_hint(compiler, sqltext, table, "@" + hint.strip())


# -- functions -----------------------------------------------------------------

# Microseconds per unit; computed exactly (see _compile_timestampdiff).
_UNIT_MICROSECONDS = {
    "microsecond": 1,
    "millisecond": 1_000,
    "second": 1_000_000,
    "minute": 60_000_000,
    "hour": 3_600_000_000,
    "day": 86_400_000_000,
    "week": 604_800_000_000,
}
# Calendar units are refused: MySQL counts whole calendar months (Jan 31 ->
# Feb 29 is 0 months), which no fixed number of seconds gives, and the SQL
# tool for it, age(), gives no months on CockroachDB: its age() answers in
# hours ("384190:06:45" for 44 years; cockroach commit 59b2bc218,
# https://github.com/cockroachdb/cockroach/commit/59b2bc218, logic test
# pkg/sql/logictest/testdata/logic_test/datetime).
_CALENDAR_UNITS = ("month", "quarter", "year")
_CALENDAR_REFUSAL = (
    "timestampdiff() cannot count {unit!r} exactly: months, quarters and years "
    "are calendar units (MySQL counts Jan 31 -> Feb 29 as 0 months), no fixed "
    "number of seconds gives them, and CockroachDB's age() answers in hours, "
    "not months. Compute calendar differences in Python (e.g. "
    "dateutil.relativedelta) or use DAY/WEEK."
)


def _unit_text(unit: Any) -> str | None:
    """The unit a ``timestampdiff`` argument spells, lower-case; None if unknown.

    Accepts what the older package accepted: ``"SECOND"``, ``" SECOND "``,
    ``literal("SECOND")`` / ``bindparam("u", "SECOND")``, ``text("SECOND")``
    and ``literal_column("SECOND")``.
    """
    raw: Any
    if isinstance(unit, str):
        raw = unit
    elif isinstance(unit, BindParameter):
        raw = unit.value
    elif isinstance(unit, TextClause):
        raw = unit.text
    elif isinstance(unit, ColumnClause) and unit.is_literal:
        raw = unit.name
    else:
        return None
    if not isinstance(raw, str):
        return None
    return raw.strip().strip("'\"").strip().lower()


def _unit_error(unit: Any, spelled: str | None) -> str | None:
    """Why ``unit`` cannot be used, or None when it can."""
    if spelled in _UNIT_MICROSECONDS:
        return None
    if spelled in _CALENDAR_UNITS:
        return _CALENDAR_REFUSAL.format(unit=spelled.upper())
    return (
        f"timestampdiff() unit must be one of {', '.join(_UNIT_MICROSECONDS)} "
        f"(any case, as a string, literal(), bindparam() or text()); got {unit!r}"
    )


class timestampdiff(GenericFunction[int]):
    """``timestampdiff(unit, start, end)``: whole ``unit``s from start to end.

    As MySQL's ``TIMESTAMPDIFF`` (and the older package's helper): truncated
    toward zero; units microsecond, millisecond, second, minute, hour, day,
    week, computed exactly in integer microseconds on both servers. MONTH,
    QUARTER and YEAR are refused with an explanation (see ``_CALENDAR_UNITS``).

    It is also what ``func.timestampdiff(text("MINUTE"), a, b)`` builds (a
    SQLAlchemy generic function, as the older package registered it, so code
    written for MySQL and CockroachDB alike, such as Airflow's, is translated).
    A plain-string unit is checked at once (:class:`~sqlalchemy.exc.ArgumentError`);
    a unit given as a SQL element is checked when compiled with this dialect
    (:class:`~sqlalchemy.exc.CompileError`), because other dialects in the same
    process (MySQL) render ``func.timestampdiff`` unchanged.

    Example::

        import datetime as dt

        from sqlalchemy import literal, select

        from sqlalchemy_crdb_async import timestampdiff

        start = literal(dt.datetime(2024, 1, 31, 12, 0, 0))
        end = literal(dt.datetime(2024, 1, 31, 12, 1, 30))
        async with engine.connect() as conn:
            seconds = await conn.scalar(select(timestampdiff("second", start, end)))
        assert seconds == 90
    """

    type = sqltypes.BigInteger()
    name = "timestampdiff"
    inherit_cache = True
    # The unit decides the SQL text but may sit in a bind parameter, whose value
    # is not part of SQLAlchemy's cache key: key on the resolved unit too.
    _traverse_internals = [
        *GenericFunction._traverse_internals,
        ("unit", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, unit: Any, *start_end: Any, **kw: Any) -> None:
        # (unit, start, end); other arities reach the compiler's error, as
        # func.timestampdiff(...) for other dialects takes whatever they take
        spelled = _unit_text(unit)
        if isinstance(unit, str):
            error = _unit_error(unit, spelled)
            if error is not None:
                raise exc.ArgumentError(error)
        #: The unit, lower-case, or None when the argument spells none.
        self.unit = spelled
        super().__init__(unit, *start_end, **kw)


def _microseconds(start: str, end: str) -> str:
    """Exact microseconds from ``start`` to ``end``, as INT8 SQL.

    CockroachDB's ``extract`` returns FLOAT (pkg/sql/sem/builtins/builtins.go:
    the ``extract`` overloads have ``ReturnType: types.Float``;
    https://www.cockroachlabs.com/docs/stable/functions-and-operators#date-and-time-functions),
    so ``extract(epoch FROM end - start)`` cannot be scaled exactly (0.000493 s
    / 1e-06 is 492.999...). Here the whole seconds come from the epochs of the
    second-truncated timestamps (whole numbers below 2**53, which a FLOAT holds
    exactly), and each timestamp's fraction of a second (under 1 s, so its FLOAT
    error is far below half a microsecond) is rounded to whole microseconds;
    the rest is INT8 arithmetic. The casts to FLOAT8 make PostgreSQL (whose
    extract returns NUMERIC) run the same arithmetic.
    """

    def epoch(value: str) -> str:
        return f"CAST(extract(epoch FROM {value}) AS FLOAT8)"

    def second(ts: str) -> str:
        return f"date_trunc('second', {ts})"

    def fraction_us(ts: str) -> str:
        return f"CAST(round({epoch(f'{ts} - {second(ts)}')} * 1000000) AS BIGINT)"

    seconds = f"CAST({epoch(second(end))} - {epoch(second(start))} AS BIGINT)"
    return f"({seconds} * 1000000 + {fraction_us(end)} - {fraction_us(start)})"


@compiles(timestampdiff, DIALECT_NAME)
@compiles(timestampdiff, "postgresql")
def _compile_timestampdiff(element: timestampdiff, compiler: Any, **kw: Any) -> str:
    args = list(element.clauses)
    if len(args) != 3:
        raise exc.CompileError(
            f"timestampdiff() takes 3 arguments (unit, start, end), got {len(args)}"
        )
    error = _unit_error(args[0], element.unit)
    if error is not None:
        raise exc.CompileError(error)
    assert element.unit is not None
    s = compiler.process(args[1], **kw)
    e = compiler.process(args[2], **kw)
    micro = _microseconds(s, e)
    per_unit = _UNIT_MICROSECONDS[element.unit]
    if per_unit == 1:
        return micro
    # div() truncates toward zero on both servers, as MySQL does
    return f"CAST(div({micro}, {per_unit}) AS BIGINT)"


class unique_rowid(FunctionElement[int]):
    """CockroachDB's ``unique_rowid()``: what SERIAL means there (INT8).

    Use it as a ``server_default`` or in a query. Raises ``CompileError`` on
    PostgreSQL, saying to use ``Identity()`` or a ``Sequence`` instead.

    Example (CockroachDB)::

        from sqlalchemy import BigInteger, Column, MetaData, Table

        from sqlalchemy_crdb_async import unique_rowid

        meta = MetaData()
        events = Table(
            "events", meta,
            Column("id", BigInteger, primary_key=True, server_default=unique_rowid()),
        )
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)  # id INT8 DEFAULT unique_rowid()
    """

    type = sqltypes.BigInteger()
    name = "unique_rowid"
    inherit_cache = True


@compiles(unique_rowid)
def _compile_unique_rowid(element: unique_rowid, compiler: Any, **kw: Any) -> str:
    if not _is_crdb(compiler):
        raise _crdb_only(
            "unique_rowid()", "use an Identity() column or a Sequence on PostgreSQL"
        )
    return "unique_rowid()"


def uuid_primary_key(name: str = "id", **column_kw: Any) -> Column[Any]:
    """``Column(name, Uuid, primary_key=True, server_default=gen_random_uuid())``.

    CockroachDB recommends UUID keys over sequential ones to spread writes;
    ``gen_random_uuid()`` exists on CockroachDB and on PostgreSQL 13+.
    ``column_kw`` go to ``Column`` (a ``server_default`` replaces ours).

    Example::

        from sqlalchemy import Column, MetaData, String, Table, insert

        from sqlalchemy_crdb_async import uuid_primary_key

        meta = MetaData()
        users = Table("users", meta, uuid_primary_key(), Column("name", String))
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            stmt = insert(users).values(name="a").returning(users.c.id)
            assert (await conn.execute(stmt)).scalar_one() is not None
    """
    column_kw.setdefault("server_default", text("gen_random_uuid()"))
    return Column(name, sqltypes.Uuid(), primary_key=True, **column_kw)
