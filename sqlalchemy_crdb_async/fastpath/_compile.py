"""Compile a Core statement once per dialect into a :class:`Plan` (internal).

A plan is everything the fast path needs per execution, worked out once:

- the SQL text with positional ``$n`` placeholders (asyncpg's paramstyle,
  ``numeric_dollar``), and for each position where its value comes from: a
  caller's parameter, the value bound in the statement (``t.c.id == 5``), or a
  Python-side column default (``insert_prefetch``/``update_prefetch``), plus
  the bind processor of its type when the type has one (JSON serialises, most
  asyncpg types have none);
- the result columns: their keys and the column objects for
  ``row._mapping[t.c.x]`` (a ``SimpleResultMetaData``), and their types, from
  which the result processors are chosen once the server has said each
  column's type OID (:meth:`Plan.result_processors`, once per prepared
  statement per connection);
- whether the statement may leave session state behind, in which case a
  pooled connection still gets its reset: the same judge as the ordinary
  path's (:func:`~sqlalchemy_crdb_async.pool._statements.statement_leaves_nothing`:
  a select or a write of pure builtins, with no text fragment, into a table
  no default of which can draw a sequence value, leaves nothing), asked once
  per plan.

Refused with :class:`~sqlalchemy_crdb_async.errors.FastPathError`, saying what
to write instead: statements that need per-execution rendering (an expanding
``IN`` list, ``literal_execute``), ORM entity selects (the fast path returns
rows, not objects), and anything that is not a select, insert, update or
delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Delete, Insert, Select, Update
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.sql.elements import BindParameter, _anonymous_label

from ..errors import FastPathError, PreparedParameterError
from ..pool._statements import statement_leaves_nothing

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["STATEMENT_TYPES", "Plan", "compile_plan"]

#: What ``prepared()`` accepts.
STATEMENT_TYPES: Final = (Select, Insert, Update, Delete)

_REQUIRED: Final = object()


@dataclass(frozen=True)
class _Position:
    """Where the value of one ``$n`` comes from."""

    name: str
    #: The statement's own value (or a column default), or _REQUIRED.
    default: Any
    #: The default is a callable evaluated per execution.
    call: bool
    processor: Callable[[Any], Any] | None


@dataclass(frozen=True)
class Plan:
    """One statement compiled for one dialect; see the module docstring."""

    sql: str
    positions: tuple[_Position, ...]
    #: Parameter names a caller must pass, and the ones they may pass.
    required: frozenset[str]
    accepted: frozenset[str]
    metadata: SimpleResultMetaData
    result_types: tuple[Any, ...]
    #: The statement may leave session state behind: the pool's verdict
    #: (pool/_statements.py), judged once here.
    touches_session: bool
    describe: str

    def __post_init__(self) -> None:
        # Every position a plain required parameter with no bind processor
        # (the common case on asyncpg): arguments() is then one list display.
        # ... and every name it accepts is one of them.
        plain = self.required == self.accepted and all(
            pos.processor is None and pos.default is _REQUIRED for pos in self.positions
        )
        names = tuple(pos.name for pos in self.positions) if plain else None
        if names is not None and set(names) != self.accepted:
            names = None
        object.__setattr__(self, "_plain_names", names)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``params``; raises on a wrong name."""
        names: tuple[str, ...] | None = self._plain_names  # type: ignore[attr-defined]
        if names is not None and len(params) == len(self.accepted):
            # As many names as it takes, and each one it takes is there: the
            # very names (a KeyError means one is missing, so one is unknown).
            try:
                return list(map(params.__getitem__, names))
            except KeyError:
                raise self._parameter_error(params) from None
        if not params.keys() <= self.accepted or not self.required <= params.keys():
            raise self._parameter_error(params)
        if names is not None:
            return list(map(params.__getitem__, names))
        args = []
        for pos in self.positions:
            if pos.name in params:
                value = params[pos.name]
            elif pos.call:
                value = pos.default()
            else:
                value = pos.default
            args.append(value if pos.processor is None else pos.processor(value))
        return args

    def result_processors(
        self, dialect: Dialect, type_oids: Sequence[int]
    ) -> list[Any] | None:
        """Each column's processor for the OIDs the server reported, or None
        when no column needs one (rows are then built from the driver's)."""
        if len(type_oids) != len(self.result_types):
            raise FastPathError(
                f"{self.describe}: the server returns {len(type_oids)} columns, "
                f"the statement names {len(self.result_types)}"
            )
        processors = [
            type_._cached_result_processor(dialect, oid)
            for type_, oid in zip(self.result_types, type_oids, strict=True)
        ]
        return processors if any(p is not None for p in processors) else None

    def _parameter_error(self, params: Mapping[str, Any]) -> PreparedParameterError:
        missing = sorted(self.required - params.keys())
        unknown = sorted(params.keys() - self.accepted)
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        takes = ", ".join(sorted(self.accepted)) or "no parameters"
        return PreparedParameterError(
            f"{self.describe}: {'; '.join(parts)} (it takes: {takes}; required: "
            f"{', '.join(sorted(self.required)) or 'none'})"
        )


def check_statement(statement: Any) -> None:
    """Refuse what the fast path cannot run, before any connection is used."""
    if not isinstance(statement, STATEMENT_TYPES):
        raise FastPathError(
            "prepared() takes a Core select(), insert(), update() or delete(), "
            f"got {type(statement).__name__}; run other statements with "
            "connection.execute()"
        )
    if isinstance(statement, Select):
        entities = [
            d["name"]
            for d in statement.column_descriptions
            if d.get("entity") is not None and d.get("expr") is d.get("entity")
        ]
        if entities:
            raise FastPathError(
                f"prepared() returns rows, not ORM objects: select columns "
                f"(select({entities[0]}.__table__) or select({entities[0]}.id, "
                "...)), or use session.execute() for objects"
            )


def compile_plan(statement: Any, dialect: Dialect) -> Plan:
    """Compile ``statement`` for ``dialect`` (see the module docstring)."""
    check_statement(statement)
    compiled: SQLCompiler = statement.compile(dialect=dialect)
    describe = f"prepared({_first_line(compiled.string)})"
    if dialect.driver != "asyncpg" or compiled.positiontup is None:
        raise FastPathError(
            f"{describe}: the fast path needs asyncpg (cockroachdb+asyncpg://); "
            f"this engine's driver is {dialect.driver}"
        )
    for bind in compiled.binds.values():
        if bind.expanding or bind in compiled.literal_execute_params:
            raise FastPathError(
                f"{describe}: parameter {bind.key!r} is rendered per execution "
                "(an IN list or literal_execute), which a prepared statement "
                "cannot do; write column == any_(bindparam(name, "
                "type_=ARRAY(...))) and pass a list"
            )
    defaults = _column_defaults(compiled)
    processors = compiled._bind_processors
    positions: list[_Position] = []
    required: set[str] = set()
    accepted: set[str] = set()
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        processor = processors.get(name)
        if processor is not None and not callable(processor):
            raise FastPathError(f"{describe}: tuple parameter {name!r} unsupported")
        named = _named_by_caller(bind)
        default, call = _value_of(bind, defaults.get(name), named)
        if named:
            accepted.add(name)
            if default is _REQUIRED:
                required.add(name)
        positions.append(_Position(name, default, call, processor))
    columns = compiled._result_columns
    metadata = SimpleResultMetaData(
        [c.keyname for c in columns], extra=[c.objects for c in columns]
    )
    return Plan(
        sql=compiled.string,
        positions=tuple(positions),
        required=frozenset(required),
        accepted=frozenset(accepted),
        metadata=metadata,
        result_types=tuple(c.type for c in columns),
        touches_session=not statement_leaves_nothing(statement),
        describe=describe,
    )


def _column_defaults(compiled: SQLCompiler) -> dict[str, _Default]:
    """Python-side column defaults (``Column(default=...)``) by bind name."""
    found: dict[str, _Default] = {}
    for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
        is_update = column in compiled.update_prefetch
        default = column.onupdate if is_update else column.default
        if default is None or not (default.is_scalar or default.is_callable):
            raise FastPathError(
                f"prepared(): column {column.key!r} has a default the fast path "
                "cannot compute; pass its value as a parameter"
            )
        arg = default.arg  # type: ignore[attr-defined]
        if default.is_callable:
            # SQLAlchemy wraps a zero-argument default to take the execution
            # context; the fast path has none to give.
            found[column.key] = _Default(lambda f=arg: f(None), call=True)
        else:
            found[column.key] = _Default(arg, call=False)
    return found


@dataclass(frozen=True)
class _Default:
    value: Any
    call: bool


def _value_of(
    bind: BindParameter[Any], default: _Default | None, named: bool
) -> tuple[Any, bool]:
    """(value or _REQUIRED, whether it is a callable to call per execution).

    A named parameter with no value of its own is required, even where
    SQLAlchemy would send NULL (an ``insert(t)`` column left out): the fast
    path compiles every column in, so a forgotten one must not become NULL.
    """
    if default is not None:
        return default.value, default.call
    if bind.callable is not None:
        return bind.callable, True
    if bind.value is not None or not named:
        return bind.value, False
    return _REQUIRED, False


def _named_by_caller(bind: BindParameter[Any]) -> bool:
    """A ``bindparam("name")`` (or a column's insert/update bind), not an
    anonymous value bound by an expression such as ``t.c.id == 5``."""
    return not isinstance(bind.key, _anonymous_label)


def _first_line(sql: str) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= 60 else line[:57] + "..."
