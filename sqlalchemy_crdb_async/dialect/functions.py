"""CockroachDB functions and column helpers that compile on both servers.

- :func:`timestampdiff`: whole units between two timestamps, as MySQL's and
  the older ``sqlalchemy-cockroachdb``'s, exact to the microsecond;
  ``func.timestampdiff(text("MINUTE"), a, b)`` compiles to the same SQL with
  this package's dialects (:func:`render_timestampdiff`, called by the
  compiler's ``visit_timestampdiff_func``) and to plain ``timestampdiff(...)``
  with every other dialect;
- :func:`unique_rowid`: CockroachDB's SERIAL default (CockroachDB-only);
- :func:`uuid_primary_key`: a ``UUID`` primary key defaulting to
  ``gen_random_uuid()``, which both servers have.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, exc, text
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter, ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement, GenericFunction
from sqlalchemy.sql.visitors import InternalTraversal

from ._compiling import DIALECT_NAME, crdb_only, is_crdb

__all__ = [
    "render_timestampdiff",
    "timestampdiff",
    "unique_rowid",
    "uuid_primary_key",
]


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

    ``func.timestampdiff(text("MINUTE"), a, b)`` compiles to the same SQL
    with this package's dialects, so code written for MySQL and CockroachDB
    alike, such as Airflow's, is translated. This class is *not* registered
    as SQLAlchemy's generic ``timestampdiff`` (``_register = False``): a
    registration is process-wide, it would change what ``func.timestampdiff``
    builds for every dialect, and it collided with the older
    ``sqlalchemy-cockroachdb``'s registration of the same name (an SAWarning,
    "GenericFunction 'timestampdiff' is already registered", when both were
    imported). Other dialects (stock ``postgresql``, MySQL) render this class
    and ``func.timestampdiff`` as the plain function call.

    A plain-string unit is checked at once (:class:`~sqlalchemy.exc.ArgumentError`);
    a unit given as a SQL element is checked when compiled with this dialect
    (:class:`~sqlalchemy.exc.CompileError`). When the older package is imported
    too, ``func.timestampdiff`` builds *its* class, which it compiles itself
    for the dialect name ``cockroachdb`` (its NUMERIC arithmetic, not this
    exact one); call :func:`timestampdiff` from this package to get this one.

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
    # not SQLAlchemy's process-wide func.timestampdiff (see the docstring)
    _register = False
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
def _compile_timestampdiff(element: timestampdiff, compiler: Any, **kw: Any) -> str:
    # the unit is part of this class's cache key: rendered as a constant
    return render_timestampdiff(compiler, list(element.clauses), **kw)


def render_timestampdiff(
    compiler: Any, args: list[Any], *, unit_in_key: bool = True, **kw: Any
) -> str:
    """The SQL of ``timestampdiff(unit, start, end)`` for this dialect.

    ``unit_in_key=False`` is for ``func.timestampdiff(...)``, a plain SQLAlchemy
    function whose cache key leaves out a bound unit's value: the unit is then
    checked now and picked by value in the SQL (a ``CASE`` on the bound unit),
    so a cached compilation stays right for another unit (an unknown one gives
    NULL). Raises ``CompileError`` for another arity or an unknown unit.
    """
    if len(args) != 3:
        raise exc.CompileError(
            f"timestampdiff() takes 3 arguments (unit, start, end), got {len(args)}"
        )
    unit = _unit_text(args[0])
    error = _unit_error(args[0], unit)
    if error is not None:
        raise exc.CompileError(error)
    assert unit is not None
    s = compiler.process(args[1], **kw)
    e = compiler.process(args[2], **kw)
    micro = _microseconds(s, e)
    if not unit_in_key and isinstance(args[0], BindParameter):
        bound = compiler.process(args[0], **kw)
        cases = " ".join(
            f"WHEN '{name}' THEN {per}" for name, per in _UNIT_MICROSECONDS.items()
        )
        spelled = f"lower(btrim(CAST({bound} AS TEXT), ' ''\"'))"
        return f"CAST(div({micro}, CASE {spelled} {cases} END) AS BIGINT)"
    per_unit = _UNIT_MICROSECONDS[unit]
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
    if not is_crdb(compiler):
        raise crdb_only(
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
