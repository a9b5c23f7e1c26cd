"""Which statements leave nothing for the session reset to undo (internal).

``CockroachPool`` resets a returned connection's session (:mod:`._reset`)
only when something sent on it since its last reset could have left state
there: the reset (``CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL;
UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD
SEQUENCES``, https://www.postgresql.org/docs/current/sql-discard.html) undoes
cursors, settings, ``LISTEN``, session advisory locks, temporary tables and
sequence state (``currval``/``lastval``). A connection whose statements all
left none of that goes back to the pool with its plain ``ROLLBACK``, as with
SQLAlchemy's own pool: no reset message, nothing to parse.

This module is the one judge of that, for both ways a statement goes out:
:func:`leaves_nothing` on the ordinary path (the pool's ``do_execute``
listener, per execution context) and :func:`statement_leaves_nothing` on the
prepared fast path (``fastpath/_compile.py``, once per plan). It judges only
what it can see through, and counts everything else as leaving state:

``SELECT``
    compiled by SQLAlchemy from its constructs (Core ``select()``, the ORM's
    ``session.get()`` and queries), with no text fragment (``text()``,
    ``literal_column()``, prefixes, suffixes, hints), calling no function
    but the side-effect-free builtins in :data:`PURE_FUNCTIONS`, and with no
    value of a type that wraps itself in SQL when compiled
    (``bind_expression``/``column_expression``: SQL the walk cannot see).
``INSERT`` / ``UPDATE`` / ``DELETE``
    the same rules for everything written in the statement (values, ``WHERE``,
    ``RETURNING``, ``ON CONFLICT``, a ``SELECT`` it inserts from, a
    data-modifying CTE), and on top of that a target :class:`~sqlalchemy.Table`
    none of whose column defaults can draw a sequence value (``nextval``
    changes ``currval``/``lastval``, which only ``DISCARD SEQUENCES`` undoes).
    An ``INSERT`` may fire each column's default and, as an upsert
    (``ON CONFLICT``, ``UPSERT``), its ``onupdate``: both are judged for
    every ``INSERT``. A column draws a sequence when it has a ``Sequence``,
    an ``Identity()`` (a sequence on PostgreSQL,
    https://www.postgresql.org/docs/current/ddl-identity-columns.html;
    counted the same on CockroachDB), a ``server_default`` or SQL-expression
    ``default`` that is not a literal or a call of a pure builtin
    (``gen_random_uuid()``, ``now()``, ``current_timestamp``,
    ``unique_rowid()``; ``nextval(...)`` or text it cannot read are not),
    a ``server_default`` of another kind (``FetchedValue()``: set by a
    trigger), or when it is the integer primary key the DDL compiler writes
    as ``SERIAL``. That last rule mirrors
    ``PGDDLCompiler.get_column_specification``, which both server flavours
    use unchanged (the table's ``autoincrement_column``, no ``Identity()``,
    no default but an optional ``Sequence``): on PostgreSQL SERIAL is a
    sequence; on CockroachDB it is ``INT8 DEFAULT unique_rowid()`` only under
    the default ``serial_normalization = rowid``
    (tests/crdb_facts/information_schema_columns.json ``serial_rowid_default``)
    and a real sequence under ``sql_sequence`` and the other settings
    (tests/crdb_facts/session_vars.md ``serial_normalization``), which a role,
    a database or the session that created the table may have chosen, so it
    counts as drawing on both (write ``server_default=unique_rowid()`` to
    make a CockroachDB key visibly sequence-free). Python-side defaults
    (``default=5``, ``default=uuid.uuid4``) run in the client and send
    nothing. Computed columns are fine: their expressions must be immutable
    (https://www.postgresql.org/docs/current/ddl-generated-columns.html;
    cockroach pkg/sql/catalog/schemaexpr/computed_column.go,
    ``volatility.Immutable``). An ``UPDATE`` or ``DELETE`` fires no insert
    default: only ``onupdate`` (judged the same way; ``server_onupdate``
    other than a computed column counts as a trigger), and, through foreign
    keys of the same ``MetaData`` with ``ON DELETE``/``ON UPDATE SET
    DEFAULT``, the referencing column's default (followed through
    ``CASCADE``). A target that is not a ``Table`` (an alias, a join, a
    lightweight ``table()``) has defaults it cannot see, and counts as
    leaving state.

Raw SQL (``exec_driver_sql``, ``text()``) and anything else count as leaving
state. What it cannot see at all are the server's own objects: a trigger, a
rule or a view that calls a function with session side effects, a column
default the server has and the ``Table`` does not declare, or a foreign key
action the ``MetaData`` does not know. A function with side effects called by
name in the statement is not in :data:`PURE_FUNCTIONS` and resets the session.

The verdict is kept on the compiled statement, which SQLAlchemy caches and
reuses, so the walk runs once per statement shape (once per plan on the fast
path).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Delete, Insert, Select, Table, Update, exc
from sqlalchemy.dialects.postgresql.dml import OnConflictClause
from sqlalchemy.schema import Computed, DefaultClause
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import (
    ClauseElement,
    ColumnClause,
    ColumnElement,
    TextClause,
)
from sqlalchemy.sql.functions import FunctionElement

if TYPE_CHECKING:
    from sqlalchemy import Column
    from sqlalchemy.engine.interfaces import ExecutionContext

__all__ = ["PURE_FUNCTIONS", "VERDICT", "leaves_nothing", "statement_leaves_nothing"]

#: Builtin functions that change nothing in the session (PostgreSQL's and
#: CockroachDB's of the same name): aggregates, conditionals, string, number,
#: time and key-generating functions. ``random()`` advances the session's
#: random state, which the reset does not restore either; ``unique_rowid()``
#: and ``gen_random_ulid()`` are CockroachDB's (tests/crdb_facts/builtins.json).
PURE_FUNCTIONS: Final = frozenset(
    {
        "abs",
        "array_agg",
        "avg",
        "bool_and",
        "bool_or",
        "ceil",
        "char_length",
        "character_length",
        "clock_timestamp",
        "coalesce",
        "concat",
        "count",
        "current_date",
        "current_setting",
        "current_time",
        "current_timestamp",
        "date_trunc",
        "every",
        "floor",
        "gen_random_ulid",
        "gen_random_uuid",
        "greatest",
        "json_agg",
        "json_build_object",
        "jsonb_agg",
        "jsonb_build_object",
        "least",
        "length",
        "localtime",
        "localtimestamp",
        "lower",
        "max",
        "min",
        "now",
        "nullif",
        "octet_length",
        "random",
        "round",
        "statement_timestamp",
        "string_agg",
        "substr",
        "substring",
        "sum",
        "transaction_timestamp",
        "trim",
        "trunc",
        "unique_rowid",
        "upper",
    }
)

#: The attribute of a compiled statement that keeps its verdict.
VERDICT: Final = "_crdb_leaves_nothing"

#: A ``server_default`` text it can read: a literal (number, string, boolean,
#: NULL) or a call of a builtin without arguments, or a bare SQL value
#: function (``current_timestamp``), with an optional ``::type`` cast.
_TEXT_DEFAULT: Final = re.compile(
    r"""\s*(?:
        (?P<literal>-?\d+(?:\.\d+)?|'(?:[^']|'')*'|true|false|null)
      | (?:pg_catalog\.)?(?P<name>[a-z_][a-z0-9_]*)\s*(?:\(\s*\))?
    )\s*(?:::\s*[a-z_][a-z0-9_ ]*(?:\(\s*\d+(?:\s*,\s*\d+)?\s*\))?(?:\[\])?\s*)?""",
    re.IGNORECASE | re.VERBOSE,
)


def leaves_nothing(context: ExecutionContext | None) -> bool:
    """True when the statement of ``context`` leaves no session state
    behind (see the module docstring); False when it may."""
    compiled: Any = getattr(context, "compiled", None)
    if compiled is None:
        return False  # exec_driver_sql: raw SQL
    verdict = getattr(compiled, VERDICT, None)
    if verdict is None:
        verdict = statement_leaves_nothing(getattr(compiled, "statement", None))
        setattr(compiled, VERDICT, verdict)
    return bool(verdict)


def statement_leaves_nothing(statement: Any) -> bool:
    """True when ``statement`` (a Core or ORM construct) leaves no session
    state behind (see the module docstring); False when it may. Not cached:
    callers keep the verdict (:func:`leaves_nothing`, the fast path's plan)."""
    if not isinstance(statement, (Select, Insert, Update, Delete)):
        return False
    return _pure(statement)


def _pure(root: Any) -> bool:
    """Nothing in the expression ``root`` can leave session state."""
    for element in visitors.iterate(root):
        if isinstance(element, TextClause):
            return False
        if isinstance(element, (Select, UpdateBase)) and _has_fragments(element):
            return False
        if isinstance(element, UpdateBase):
            if not _harmless_write(element):
                return False
        elif isinstance(element, OnConflictClause):
            if not _on_conflict_pure(element):
                return False
        elif isinstance(element, FunctionElement):
            if str(getattr(element, "name", "")).lower() not in PURE_FUNCTIONS:
                return False
        elif (
            isinstance(element, ColumnClause)
            and element.is_literal
            and element.name != "*"  # count(*)
        ):
            return False
        if isinstance(element, ColumnElement) and _wraps_in_sql(element.type):
            return False
    return True


def _on_conflict_pure(clause: OnConflictClause) -> bool:
    """``ON CONFLICT``'s ``SET`` values and ``WHERE`` clauses, walked here:
    SQLAlchemy 2.0's ``iterate()`` does not enter them (2.1's does), and
    2.0 keeps a ``SET`` value as given (a Python value is a bound parameter;
    tests/pool/test_clean_returns.py ``on-conflict-func`` runs on both)."""
    to_set: Any = getattr(clause, "update_values_to_set", None) or ()
    # 2.1: a dict of column to value; 2.0: a list of (column, value) pairs
    values = to_set.values() if isinstance(to_set, dict) else (v for _, v in to_set)
    parts: list[Any] = list(values)
    parts.append(getattr(clause, "update_whereclause", None))
    parts.append(getattr(clause, "inferred_target_whereclause", None))
    return all(_pure(part) for part in parts if isinstance(part, ClauseElement))


def _wraps_in_sql(type_: Any) -> bool:
    """A type that wraps its values in SQL of its own when compiled
    (``bind_expression``/``column_expression``), which the walk cannot see."""
    return bool(type_._has_bind_expression or type_._has_column_expression)


def _has_fragments(statement: Any) -> bool:
    """Prefixes, suffixes or hints: text written into the statement."""
    return any(
        getattr(statement, name, None)
        for name in ("_prefixes", "_suffixes", "_hints", "_statement_hints")
    )


def _harmless_write(statement: UpdateBase) -> bool:
    if not isinstance(statement, (Insert, Update, Delete)):
        return False
    target = statement.table
    if not isinstance(target, Table):
        return False  # an alias, a join, a table(): its defaults are unseen
    table: Table = target._deannotate()  # the ORM's annotated copy
    if any(_wraps_in_sql(c.type) for c in table.columns):
        return False  # its values are wrapped when compiled, unseen here
    if isinstance(statement, Insert):
        # iterate() does not walk the rows of a multi-row values()
        for row in statement._multi_values:
            for values in row:
                items = values.values() if isinstance(values, dict) else values
                for value in items:
                    if isinstance(value, ClauseElement) and not _pure(value):
                        return False
        # an upsert (ON CONFLICT, CockroachDB's UPSERT) may fire onupdate too
        return not any(
            _draws_on_insert(c) or _draws_on_update(c) for c in table.columns
        )
    if isinstance(statement, Update) and any(
        _draws_on_update(c) for c in table.columns
    ):
        return False
    action = "ondelete" if isinstance(statement, Delete) else "onupdate"
    return _referencing_harmless(table, action, set())


def _draws_on_insert(column: Column[Any]) -> bool:
    """The column's insert default can draw a sequence value."""
    if column.identity is not None or _draws(column.default, column.server_default):
        return True
    # SERIAL, as PGDDLCompiler.get_column_specification decides it
    return column is column.table.autoincrement_column and (
        column.default is None or column.default.is_sequence
    )


def _draws_on_update(column: Column[Any]) -> bool:
    """The column's update default can draw a sequence value."""
    return _draws(column.onupdate, column.server_onupdate)


def _draws(client: Any, server: Any) -> bool:
    """A client-side default (``default``/``onupdate``) or a server-side one
    that can draw a sequence value; a Python value or callable cannot."""
    if client is not None and (
        client.is_sequence or (client.is_clause_element and not _pure(client.arg))
    ):
        return True
    return server is not None and not _pure_server_default(server)


def _pure_server_default(default: Any) -> bool:
    if isinstance(default, Computed):
        return True  # immutable expressions only (see the module docstring)
    if not isinstance(default, DefaultClause):
        return False  # FetchedValue(), Identity(): set by the server unseen
    arg = default.arg
    if isinstance(arg, str):
        return True  # rendered as a quoted literal
    if isinstance(arg, TextClause):
        return _pure_text_default(arg.text)
    return _pure(arg)


def _pure_text_default(text: str) -> bool:
    match = _TEXT_DEFAULT.fullmatch(text)
    if match is None:
        return False
    name = match.group("name")
    return name is None or name.lower() in PURE_FUNCTIONS


def _referencing_harmless(table: Table, action: str, seen: set[Table]) -> bool:
    """No foreign key of the table's MetaData fires a sequence-drawing
    default when rows of ``table`` are deleted or their keys updated."""
    seen.add(table)
    for child in table.metadata.tables.values():
        for fk in child.foreign_keys:
            rule = (getattr(fk, action) or "").upper()
            if rule not in ("SET DEFAULT", "CASCADE"):
                continue
            try:
                referenced = fk.column.table
            except exc.NoReferenceError:  # its target is not in the MetaData
                continue
            if referenced is not table:
                continue
            if rule == "SET DEFAULT":
                if _draws_on_insert(fk.parent):
                    return False
            elif child not in seen and not _referencing_harmless(child, action, seen):
                return False
    return True
