"""What the dialect would send to CockroachDB, captured without a server.

:func:`crdb_dialect` builds the asyncpg dialect in CockroachDB mode: its
server detection runs against a :class:`Recorder` that answers
``DETECT_SERVER_SQL`` with a real ``SELECT version()`` string from
``tests/crdb_facts/version.json``, so ``server_info``, ``crdb_version`` and
``server_version_info`` come from the dialect's own parsing.

:class:`Recorder` stands where SQLAlchemy passes a ``Connection`` to dialect
methods (``get_multi_columns(connection, ...)``): it compiles each statement
with the dialect, records the SQL text, and answers with rows from a table of
**recorded CockroachDB answers** (rows copied from CockroachDB logic tests in
tests/crdb_facts/; an empty result where none is given). Nothing here
imitates the wire protocol: the dialect's real reflection code runs, only the
rows come from the golden data.

:func:`package_sql_literals` finds the SQL the package sends as fixed text
(constants and f-strings handed to ``execute``/``exec_driver_sql``; a
module-level string constant inside an f-string is read as its value), by
reading the source, so a new statement is checked without a new test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.sql import ClauseElement

from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from tests import facts
from tests.conformance._releases import RELEASES

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Recorder",
    "crdb_dialect",
    "golden_version",
    "package_sql_literals",
    "release_dialect",
]

Answer = Callable[[str], "list[Mapping[str, Any]] | None"]


def golden_version(label: str) -> str:
    """The recorded ``SELECT version()`` string labelled ``label``."""
    records = facts.load("version.json")["version_strings"]
    return next(r["version_string"] for r in records if r["label"] == label)


class Result:
    """The part of SQLAlchemy's Result API the dialect's reflection uses."""

    def __init__(self, rows: list[Mapping[str, Any]]) -> None:
        self._rows = [dict(r) for r in rows]

    def mappings(self) -> list[dict[str, Any]]:
        return self._rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.all())

    def all(self) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in self._rows]

    fetchall = all

    def one(self) -> tuple[Any, ...]:
        (row,) = self.all()
        return row

    def first(self) -> tuple[Any, ...] | None:
        rows = self.all()
        return rows[0] if rows else None

    def scalar(self) -> Any:
        row = self.first()
        return row[0] if row else None

    def scalars(self) -> Scalars:
        return Scalars(r[0] for r in self.all())


class Scalars(list[Any]):
    def all(self) -> list[Any]:
        return list(self)


class Recorder(Connection):
    """Records compiled SQL; answers from recorded CockroachDB rows.

    A ``Connection`` subclass only so that SQLAlchemy's ``isinstance`` checks
    (``has_table``) accept it; none of ``Connection``'s own machinery runs.
    """

    def __init__(self, dialect: Any, answer: Answer | None = None) -> None:
        # no Connection.__init__: there is no engine, pool or DBAPI connection
        self.dialect = dialect
        self.answer = answer or (lambda sql: None)
        self.statements: list[str] = []

    def _sql(self, statement: Any) -> str:
        if isinstance(statement, str):
            return statement
        assert isinstance(statement, ClauseElement)
        sql = str(statement.compile(dialect=self.dialect))
        # expanding IN parameters: one placeholder is enough for parsing
        return re.sub(r"__\[POSTCOMPILE_\w+\]", "$99", sql)

    def execute(self, statement: Any, parameters: Any = None, **kw: Any) -> Result:
        sql = self._sql(statement)
        self.statements.append(sql)
        return Result(list(self.answer(sql) or []))

    exec_driver_sql = execute

    def scalar(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        return self.execute(statement, parameters).scalar()


def crdb_dialect(
    label: str = "v24.3.0", server_version: str = "13.0.0", version: str | None = None
) -> CockroachDBDialect_asyncpg:
    """The asyncpg dialect after detecting the recorded CockroachDB ``label``
    (or the ``version`` string given) reporting ``server_version``."""
    dialect = CockroachDBDialect_asyncpg()
    version = version or golden_version(label)
    recorder = Recorder(
        dialect, lambda sql: [{"version": version, "sv": server_version}]
    )
    dialect.server_version_info = dialect._get_server_version_info(recorder)
    dialect.default_schema_name = "public"
    assert dialect.is_cockroachdb, version
    return dialect


def release_dialect(name: str) -> CockroachDBDialect_asyncpg:
    """The dialect after detecting release ``name`` of the support window
    (tests/conformance/_releases.py: its ``version()`` and
    ``server_version``; 18.0.0 at v26.3, so SQLAlchemy's PostgreSQL-18
    catalogue queries run)."""
    rel = RELEASES[name]
    return crdb_dialect(server_version=rel.server_version, version=rel.version_string)


_SQL_START = re.compile(
    r"^(SELECT|SET|RESET|SHOW|SAVEPOINT|RELEASE|ROLLBACK|COMMIT|BEGIN|CLOSE|"
    r"DISCARD|UNLISTEN|CREATE|DROP|ALTER|UPSERT|INSERT|UPDATE|DELETE)\s"
)
_SENDERS = {"execute", "exec_driver_sql", "text", "_execute", "_run", "scalar"}


def _literals(node: ast.AST, constants: Mapping[str, str]) -> list[str]:
    """The texts of a str constant or f-string, one per conditional branch.

    In an f-string a module-level string constant (``{INJECT_VARIABLE}``) is
    its value, ``{'true' if on else 'false'}`` gives both texts, any other
    ``{...}`` becomes ``x``.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if not isinstance(node, ast.JoinedStr):
        return []
    texts = [""]
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts = [str(value.value)]
        elif isinstance(value, ast.FormattedValue):
            inner = value.value
            if isinstance(inner, ast.IfExp):
                parts = [
                    *(_literals(inner.body, constants) or ["x"]),
                    *(_literals(inner.orelse, constants) or ["x"]),
                ]
            elif isinstance(inner, ast.Name) and inner.id in constants:
                parts = [constants[inner.id]]
            else:
                parts = ["x"]
        else:
            parts = ["x"]
        texts = [text + part for text in texts for part in parts]
    return texts


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """``NAME = "text"`` assignments at a module's top level."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def package_sql_literals(package: Path) -> dict[str, str]:
    """SQL text the package sends as fixed strings: ``{sql: "file:line"}``.

    Collected: UPPER_CASE constants (a string or a tuple of strings), string
    arguments of ``execute``/``exec_driver_sql``/``text``, and strings a
    function returns, when the text starts with an SQL keyword.
    """
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        constants = _module_constants(tree)
        for node in ast.walk(tree):
            candidates: list[ast.AST] = []
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id.isupper() for t in node.targets
            ):
                value = node.value
                candidates = (
                    list(value.elts) if isinstance(value, ast.Tuple) else [value]
                )
            elif isinstance(node, ast.Call):
                func = node.func
                name = (
                    func.attr
                    if isinstance(func, ast.Attribute)
                    else getattr(func, "id", "")
                )
                if name in _SENDERS:
                    candidates = list(node.args[:1])
            elif isinstance(node, ast.Return) and node.value is not None:
                candidates = [node.value]
            for candidate in candidates:
                for text in _literals(candidate, constants):
                    if not _SQL_START.match(text):
                        continue
                    where = f"{path.relative_to(package.parent)}:{candidate.lineno}"
                    for statement in text.split(";"):
                        if statement.strip():
                            found.setdefault(statement.strip(), where)
    return found
