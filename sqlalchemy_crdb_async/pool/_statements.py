"""Which statements leave nothing for the session reset to undo (internal).

``CockroachPool`` resets a returned connection's session (:mod:`._reset`)
only when something sent on it since its last reset could have left state
there: the reset (``CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL;
UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD
SEQUENCES``, https://www.postgresql.org/docs/current/sql-discard.html) undoes
cursors, settings, ``LISTEN``, session advisory locks, temporary tables and
sequence state. A connection whose statements all left none of that goes back
to the pool with its plain ``ROLLBACK``, as with SQLAlchemy's own pool: no
reset message, nothing to parse.

:func:`leaves_nothing` says so of one statement, and says it only of what it
can see through: a ``SELECT`` that SQLAlchemy compiled from its constructs
(Core ``select()``, the ORM's ``session.get()`` and queries), with no text
fragment (``text()``, ``literal_column()``, prefixes, suffixes, hints), no
``INSERT``/``UPDATE``/``DELETE`` inside (a data-modifying CTE), and calling
no function but the side-effect-free builtins in :data:`PURE_FUNCTIONS`.
Anything else (raw SQL, writes, which may draw a sequence's value through a
column default, a function of the user's) counts as leaving state, and the
connection is reset. A view or a rule that calls a function with session
side effects is the one thing it cannot see; such a function, called by name
in the ``SELECT``, is not in :data:`PURE_FUNCTIONS` and resets the session.

The verdict is kept on the compiled statement, which SQLAlchemy caches and
reuses, so the walk runs once per statement shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Select
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import ExecutionContext

__all__ = ["PURE_FUNCTIONS", "VERDICT", "leaves_nothing"]

#: Builtin functions that change nothing in the session (PostgreSQL's and
#: CockroachDB's of the same name): aggregates, conditionals, string, number
#: and time functions. ``random()`` advances the session's random state,
#: which the reset does not restore either.
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
        "string_agg",
        "substr",
        "substring",
        "sum",
        "trim",
        "trunc",
        "upper",
    }
)

#: The attribute of a compiled statement that keeps its verdict.
VERDICT: Final = "_crdb_leaves_nothing"


def leaves_nothing(context: ExecutionContext | None) -> bool:
    """True when the statement of ``context`` leaves no session state
    behind (see the module docstring); False when it may."""
    compiled: Any = getattr(context, "compiled", None)
    if compiled is None:
        return False  # exec_driver_sql: raw SQL
    verdict = getattr(compiled, VERDICT, None)
    if verdict is None:
        verdict = _judge(getattr(compiled, "statement", None))
        setattr(compiled, VERDICT, verdict)
    return bool(verdict)


def _judge(statement: Any) -> bool:
    if not isinstance(statement, Select):
        return False
    if (
        statement._prefixes
        or statement._suffixes
        or statement._hints
        or statement._statement_hints
    ):
        return False
    for element in visitors.iterate(statement):
        if isinstance(element, (TextClause, UpdateBase)):
            return False
        if isinstance(element, FunctionElement):
            if str(getattr(element, "name", "")).lower() not in PURE_FUNCTIONS:
                return False
        elif (
            isinstance(element, ColumnClause)
            and element.is_literal
            and element.name != "*"  # count(*)
        ):
            return False
    return True
