"""The CockroachDB conformance checker: does CockroachDB know what a statement uses?

``problems(sql)`` returns what is wrong with one statement (an empty list when
nothing is), ``assert_conforms(sql)`` fails a test with that list. Checks:

1. **Functions.** Every function called must exist in CockroachDB's builtins
   at the minimum supported version (:data:`MIN_CRDB`, the oldest release in
   the support window, see README "Supported CockroachDB versions").
2. **Catalogue.** Every ``pg_catalog`` / ``information_schema`` relation read
   must exist in CockroachDB, and every column read from one must be one of
   its columns (``tests/crdb_facts/catalog_tables.json``, CockroachDB's
   ``pkg/sql/vtable/pg_catalog.go`` and ``information_schema.go``, era
   INFERRED >= v24.3 there).
3. **Clause order.** Index definitions (``CREATE INDEX`` and ``INDEX`` lines
   inside ``CREATE TABLE``) follow CockroachDB's grammar:
   columns, ``USING HASH``, ``STORING``, ``PARTITION ALL BY``, ``WITH (...)``,
   ``WHERE``, visibility (``tests/crdb_facts/grammar.md`` sections 1-2, the
   railroad diagrams generated from cockroach ``pkg/sql/parser/sql.y``; the
   same order in cockroach ``docs/generated/sql/bnf/stmt_block.bnf``,
   ``create_index_stmt`` and ``index_def``). An inverted or vector index has
   no ``USING HASH``, ``STORING`` or ``UNIQUE`` (``pkg/sql/create_index.go``
   refuses them; ``pkg/sql/sem/idxtype/idxtype.go``), and an operator class
   goes only on the last column of an inverted or vector index.
   ``AS OF SYSTEM TIME`` must end a FROM list (tests/crdb_facts/grammar.md
   section 7).
4. **Syntax.** What is left must parse with PostgreSQL's parser.

Which builtins count as present at :data:`MIN_CRDB`
    ``tests/crdb_facts/builtins.json``: the documented list of that release;
    otherwise a function of the ``notable`` matrix marked present (not "only
    in newest master", not "from v26.2"); otherwise a function both in the
    complete 2026 registry (cockroach ``pkg/sql/sem/builtins/fixed_oids.go``)
    and documented in 2020 (so it existed before and after v24.3). Anything
    else, including every ``notable_absent`` function, is a problem.

Parser choice: pglast
    pglast wraps libpg_query, i.e. PostgreSQL's own parser (the one of
    PostgreSQL 17/18), and returns PostgreSQL's parse tree: function calls
    (``FuncCall``), relations (``RangeVar``) and column references
    (``ColumnRef``) are exact nodes, so a function hidden in a correlated
    subquery or a ``CASE`` is found without guessing. It installs here as a
    binary wheel (``pip download pglast``: manylinux wheels for CPython 3.10 to
    3.13). sqlglot (pure Python) was the alternative; it accepts and rewrites
    many dialects, so it would tolerate SQL PostgreSQL (and so CockroachDB's
    PostgreSQL-derived grammar) rejects, and its function/column model is its
    own approximation. CockroachDB's grammar is itself derived from
    PostgreSQL's, which makes PostgreSQL's parser the closer yardstick.

CockroachDB-only syntax PostgreSQL's parser rejects
    is handled before parsing, by :func:`to_postgresql`, which first checks the
    clause order with a small clause tokenizer (:func:`index_clauses`), then
    rewrites or strips: ``UPSERT INTO`` -> ``INSERT INTO``; index hints
    ``t@idx`` / ``t@{...}`` removed; ``DROP DATABASE ... CASCADE`` loses
    ``CASCADE``; ``AS OF SYSTEM TIME x`` removed after its
    position was checked; inline ``INDEX`` definitions moved out of
    ``CREATE TABLE`` into their own ``CREATE INDEX``; ``INVERTED`` removed;
    ``USING HASH`` removed; ``STORING``/``COVERING`` -> ``INCLUDE``; visibility
    (``VISIBLE``, ``NOT VISIBLE``, ``INVISIBLE``, ``VISIBILITY n``) removed;
    computed columns ``AS (e) STORED|VIRTUAL`` -> ``GENERATED ALWAYS AS (e)
    STORED|VIRTUAL``; ``FAMILY`` qualifications removed. After stripping, the
    remaining PostgreSQL clauses must also be in PostgreSQL's order (``INCLUDE``
    before ``WITH`` before ``WHERE``), which the parse checks.

Limits (said so the layer is not trusted beyond them): a relation column
added to CockroachDB after v24.3 would pass (the catalogue file is one recent
era); unqualified column names are checked only when a single catalogue
relation is in scope; session variable names in ``SET`` are not checked.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import TYPE_CHECKING, Any

from pglast.parser import ParseError, parse_sql_json

from sqlalchemy_crdb_async.dialect.indexdef import (
    _matching_paren as matching_paren,  # the dialect's own paren matcher
)
from sqlalchemy_crdb_async.dialect.indexdef import split_top_level
from tests import facts

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "INDEX_CLAUSE_ORDER",
    "MIN_CRDB",
    "assert_conforms",
    "index_clauses",
    "problems",
    "to_postgresql",
]

#: The oldest CockroachDB release in the support window (README).
MIN_CRDB = (24, 3)

#: CockroachDB's index-definition tail, in grammar order: cockroach
#: pkg/sql/parser/sql.y create_index_stmt and index_def end in
#: ``opt_where_clause opt_index_visible``, so the visibility (``VISIBLE``,
#: ``NOT VISIBLE``, ``INVISIBLE``, ``VISIBILITY n``) comes last, after WHERE,
#: for CREATE [UNIQUE | INVERTED | VECTOR] INDEX alike
#: (tests/crdb_facts/grammar.md sections 1, 2 and 4).
INDEX_CLAUSE_ORDER = (
    "USING HASH",
    "STORING",
    "PARTITION",
    "WITH",
    "WHERE",
    "VISIBILITY",
)

CATALOG_SCHEMAS = ("pg_catalog", "information_schema")


# -- golden data ---------------------------------------------------------------


@cache
def _builtins() -> tuple[frozenset[str], dict[str, str]]:
    data = facts.load("builtins.json")
    eras = data["eras"]
    label = "v{}.{} documented".format(*MIN_CRDB)
    documented = next(v for k, v in eras.items() if k.startswith(label))
    master = next(v for k, v in eras.items() if k.startswith("master"))
    old = next(v for k, v in eras.items() if k.startswith("v20.2"))
    present = set(documented["functions"])
    present |= set(master["functions"]) & set(old["functions"])
    verdicts: dict[str, str] = {}
    for name, row in {**data["notable"], **data["notable_absent"]}.items():
        status = row["status"]
        # "present", "present (undocumented)", "present (documented only from
        # v26.2)" count; "present only in newest master" and "present from
        # v26.2" are newer than MIN_CRDB
        later = "newest master" in status or status.startswith("present from")
        if status.startswith("present") and not later:
            present.add(name)
        else:
            present.discard(name)
            verdicts[name] = status
    return frozenset(present), verdicts


@cache
def _catalog() -> dict[tuple[str, str], frozenset[str] | None]:
    """(schema, relation) -> its columns; None where the file lists none."""
    era = facts.load("catalog_tables.json")["eras"]["recent (INFERRED >= v24.3)"]
    return {
        (schema, table): (
            frozenset(row["columns"]) if row.get("columns") is not None else None
        )
        for schema in CATALOG_SCHEMAS
        for table, row in era[schema].items()
    }


# -- CockroachDB-only syntax -------------------------------------------------------

_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|\S)")


def _skip_parens(sql: str, i: int) -> int:
    """Index after the ``)`` matching the ``(`` at ``sql[i]``."""
    return i + 2 + matching_paren(sql[i + 1 :])


# where a WHERE predicate ends: at the next index clause, in any order
_AFTER_WHERE = re.compile(
    r"\s(?:(?:STORING|COVERING|INCLUDE)\s*\(|USING\s+HASH\b|WITH\s*\(|"
    r"PARTITION\s|NOT\s+VISIBLE\b|VISIBLE\b|INVISIBLE\b|VISIBILITY\b)",
    re.I,
)


def index_clauses(tail: str) -> list[tuple[str, str]]:
    """Split the text after an index's column list into ``(clause, text)``.

    ``clause`` is a name of :data:`INDEX_CLAUSE_ORDER`; raises ValueError for
    text that is none of them.
    """
    out: list[tuple[str, str]] = []
    i = 0
    upper = tail.upper()
    while i < len(tail):
        if tail[i].isspace():
            i += 1
            continue
        start = i
        rest = upper[i:]
        if rest.startswith("USING HASH"):
            i += len("USING HASH")
            kind = "USING HASH"
            # the pre-v22.1 form "WITH BUCKET_COUNT = n" belongs to USING HASH
            m = re.match(r"\s+WITH\s+BUCKET_COUNT\s*=\s*\d+", tail[i:], re.I)
            if m:
                i += m.end()
        elif re.match(r"(STORING|COVERING|INCLUDE)\s*\(", rest):
            kind = "STORING"
            i = _skip_parens(tail, tail.index("(", i))
        elif rest.startswith("PARTITION"):
            kind = "PARTITION"
            i = _skip_parens(tail, tail.index("(", i))
        elif re.match(r"WITH\s*\(", rest):
            kind = "WITH"
            i = _skip_parens(tail, tail.index("(", i))
        elif rest.startswith("WHERE"):
            kind = "WHERE"
            m = _AFTER_WHERE.search(rest)
            i = len(tail) if m is None else i + m.start()
        elif m := re.match(
            r"(NOT\s+VISIBLE|VISIBLE|INVISIBLE|VISIBILITY\s+[0-9.]+)", rest
        ):
            kind = "VISIBILITY"
            i += m.end()
        else:
            raise ValueError(f"unknown index clause at {tail[start:]!r}")
        out.append((kind, tail[start:i].strip()))
    return out


def _check_index_order(
    tail: str, *, kind: str | None = None, unique: bool = False, inline: bool = False
) -> list[str]:
    """Clause order of an index tail; ``kind`` is "inverted", "vector" or None."""
    try:
        clauses = index_clauses(tail)
    except ValueError as e:
        return [str(e)]
    found: list[str] = []
    if kind:
        # the grammar has no USING HASH for inverted indexes, nor STORING or
        # UNIQUE inside CREATE TABLE (cockroach docs/generated/sql/bnf/
        # stmt_block.bnf: create_index_stmt, index_def); CREATE INVERTED INDEX
        # parses them but pkg/sql/create_index.go refuses them: "inverted
        # indexes don't support stored columns" / "... hash sharding" / "can't
        # be unique" (42602); the same for vector indexes
        # (pkg/sql/sem/idxtype/idxtype.go: CanBeUnique, SupportsSharding,
        # SupportsStoring hold for forward indexes only)
        refused = {clause for clause, _ in clauses} & {"USING HASH", "STORING"}
        if unique:
            refused.add("UNIQUE")
        found.extend(
            f"{kind} index with {clause}: CockroachDB refuses it"
            + (" (and index_def in CREATE TABLE has no such clause)" if inline else "")
            for clause in sorted(refused)
        )
    ranks = [INDEX_CLAUSE_ORDER.index(kind) for kind, _ in clauses]
    for (kind, text), before, after in zip(clauses[1:], ranks, ranks[1:], strict=False):
        if after <= before:
            found.append(
                f"clause order: {text!r} ({kind}) after "
                f"{INDEX_CLAUSE_ORDER[before]}; CockroachDB's grammar is "
                + " -> ".join(INDEX_CLAUSE_ORDER)
            )
    return found


def _pg_index_tail(tail: str) -> str:
    """The tail with CockroachDB-only clauses stripped, in the order written."""
    kept = []
    for kind, text in index_clauses(tail):
        if kind == "STORING":
            kept.append("INCLUDE" + text[text.index("(") :])
        elif kind in ("WITH", "WHERE"):
            kept.append(text)
        # USING HASH, PARTITION, visibility: CockroachDB-only, dropped
    return " ".join(kept)


_CREATE_INDEX = re.compile(
    r"^\s*CREATE\s+(?P<unique>UNIQUE\s+)?(?P<kind>INVERTED\s+|VECTOR\s+)?INDEX\s+"
    r"(?P<rest>.*)$",
    re.I | re.S,
)


def _split_index(sql_from_columns: str) -> tuple[str, str]:
    """``"(a, b) USING HASH ..."`` -> ``("(a, b)", "USING HASH ...")``."""
    end = _skip_parens(sql_from_columns, 0)
    return sql_from_columns[:end], sql_from_columns[end:]


def _kind(match: re.Match[str]) -> str | None:
    """ "inverted", "vector" or None (a forward index) for an index match."""
    word = (match["kind"] or "").strip().lower()
    return word or None


def _check_opclasses(columns: str, kind: str | None) -> list[str]:
    """An operator class only on the last column of an inverted or vector index.

    cockroach pkg/sql/create_index.go: "operator classes are only allowed for
    the last column of an inverted index" (42804); vector indexes print theirs
    (``vector_l2_ops``, tests/crdb_facts/grammar.md section 5).
    """
    try:
        tree = json.loads(parse_sql_json(f"CREATE INDEX x ON t {columns}"))
    except ParseError:
        return []  # the full statement's parse reports it
    elements = tree["stmts"][0]["stmt"]["IndexStmt"]["indexParams"]
    return [
        f"operator class {_names(e['IndexElem']['opclass'])[-1]} on "
        + (
            "a forward index"
            if kind is None
            else f"a non-last column of a {kind} index"
        )
        + ": CockroachDB refuses it"
        for position, e in enumerate(elements)
        if e["IndexElem"].get("opclass")
        and (kind is None or position < len(elements) - 1)
    ]


def _rewrite_create_index(sql: str, issues: list[str]) -> str:
    m = _CREATE_INDEX.match(sql)
    assert m is not None
    rest = m["rest"]
    paren = rest.index("(")
    columns, tail = _split_index(rest[paren:])
    issues.extend(_check_index_order(tail, kind=_kind(m), unique=bool(m["unique"])))
    issues.extend(_check_opclasses(columns, _kind(m)))
    unique = "UNIQUE " if m["unique"] else ""
    return f"CREATE {unique}INDEX {rest[:paren]}{columns} {_pg_index_tail(tail)}"


_INLINE_INDEX = re.compile(
    r"^(?P<unique>UNIQUE\s+)?(?P<kind>INVERTED\s+|VECTOR\s+)?INDEX\s+"
    r"(?P<name>\S+)\s*(?P<rest>\(.*)$",
    re.I | re.S,
)
_COMPUTED = re.compile(r"(?<!ALWAYS )\bAS\s*\(", re.I)
_FAMILY = re.compile(r"\bFAMILY\s+(\"[^\"]+\"|\w+)(\s*\([^)]*\))?", re.I)
_NOT_VISIBLE_COLUMN = re.compile(r"\bNOT\s+VISIBLE\b", re.I)


def _rewrite_column(element: str) -> str:
    element = _NOT_VISIBLE_COLUMN.sub("", element)
    m = _COMPUTED.search(element)
    if m and re.search(r"\)\s*(STORED|VIRTUAL)\b", element, re.I):
        element = element[: m.start()] + "GENERATED ALWAYS " + element[m.start() :]
    return element


def _rewrite_create_table(sql: str, issues: list[str]) -> list[str]:
    open_ = sql.index("(")
    close = _skip_parens(sql, open_)
    head, body, after = sql[:open_], sql[open_ + 1 : close - 1], sql[close:]
    table = re.sub(
        r"^\s*CREATE\s+(TEMPORARY\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?",
        "",
        head,
        flags=re.I,
    )
    kept, extra = [], []
    for element in split_top_level(body):
        m = _INLINE_INDEX.match(element)
        if m:
            columns, tail = _split_index(m["rest"])
            issues.extend(
                _check_index_order(
                    tail, kind=_kind(m), unique=bool(m["unique"]), inline=True
                )
            )
            issues.extend(_check_opclasses(columns, _kind(m)))
            unique = "UNIQUE " if m["unique"] else ""
            extra.append(
                f"CREATE {unique}INDEX {m['name']} ON {table.strip()} "
                f"{columns} {_pg_index_tail(tail)}"
            )
        elif re.match(r"^FAMILY\b", element, re.I):
            continue
        else:
            kept.append(_rewrite_column(_FAMILY.sub("", element)))
    return [f"{head}({', '.join(kept)}){after}", *extra]


_AOST = re.compile(r"\bAS\s+OF\s+SYSTEM\s+TIME\s+", re.I)
_AOST_FOLLOWERS = re.compile(
    r"^\s*(\)|$|WHERE\b|GROUP\b|HAVING\b|WINDOW\b|ORDER\b|LIMIT\b|OFFSET\b|UNION\b)",
    re.I,
)
_AFTER_FROM = re.compile(
    r"\b(WHERE|GROUP\s+BY|HAVING|WINDOW|ORDER\s+BY|LIMIT|OFFSET)\b", re.I
)
_INDEX_HINT = re.compile(r"@(\{[^}]*\}|\"[^\"]+\"|\w+)")


def _strip_aost(sql: str, issues: list[str]) -> str:
    while m := _AOST.search(sql):
        start, i = m.start(), m.end()
        mode = re.match(r"\s*(BEGIN|SET\s+TRANSACTION)\b", sql[:start], re.I)
        froms = list(re.finditer(r"\bFROM\b", sql[:start], re.I))
        if mode:
            pass  # BEGIN / SET TRANSACTION AS OF SYSTEM TIME: a transaction mode
        elif not froms:
            issues.append(f"AS OF SYSTEM TIME outside a FROM clause in {sql!r}")
        elif _AFTER_FROM.search(sql[froms[-1].end() : start]):
            issues.append(
                f"AS OF SYSTEM TIME must end the FROM list, not follow "
                f"{_AFTER_FROM.search(sql[froms[-1].end() : start])[0]!r}"  # type: ignore[index]
            )
        # the argument: a quoted literal or a function call / word
        if sql[i] == "'":
            end = sql.index("'", i + 1) + 1
        else:
            word = re.match(r"[\w.]+", sql[i:])
            end = i + (word.end() if word else 0)
            if end < len(sql) and sql[end] == "(":
                end = _skip_parens(sql, end)
        if not mode and not _AOST_FOLLOWERS.match(sql[end:]):
            issues.append(
                "AS OF SYSTEM TIME must end the FROM list; found "
                f"{sql[end:]!r} after it"
            )
        # an AOST transaction is read-only: what PostgreSQL can parse instead
        keep = " READ ONLY " if mode and mode[1].upper().startswith("SET") else " "
        sql = sql[:start] + keep + sql[end:]
    return sql


def to_postgresql(sql: str) -> tuple[list[str], list[str]]:
    """``(statements PostgreSQL's parser can read, clause-order problems)``."""
    issues: list[str] = []
    sql = re.sub(r"^\s*UPSERT\s+INTO\b", "INSERT INTO", sql, flags=re.I)
    # DROP DATABASE ... CASCADE | RESTRICT: CockroachDB's drop_database_stmt
    # (https://www.cockroachlabs.com/docs/stable/drop-database); PostgreSQL has
    # neither word there
    sql = re.sub(
        r"^(\s*DROP\s+DATABASE\b.*?)\s+(CASCADE|RESTRICT)\s*$",
        r"\1",
        sql,
        flags=re.I | re.S,
    )
    sql = _INDEX_HINT.sub("", sql)
    sql = _strip_aost(sql, issues)
    if _CREATE_INDEX.match(sql):
        return [_rewrite_create_index(sql, issues)], issues
    if re.match(r"^\s*CREATE\s+(TEMPORARY\s+)?TABLE\b", sql, re.I):
        return _rewrite_create_table(sql, issues), issues
    if re.match(r"^\s*ALTER\s+TABLE\b.*\bADD\s+COLUMN\b", sql, re.I | re.S):
        return [_rewrite_column(_FAMILY.sub("", sql))], issues
    return [sql], issues


# -- the parse-tree checks -------------------------------------------------------------


def _names(node_list: list[dict[str, Any]]) -> list[str]:
    return [n["String"]["sval"] for n in node_list if "String" in n]


def _walk(
    node: Any, scopes: list[dict[str, tuple[str, str] | None]]
) -> Iterator[tuple[str, Any, list[dict[str, tuple[str, str] | None]]]]:
    """Yield ``(kind, node, scopes)`` for FuncCall, RangeVar and ColumnRef."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, scopes)
        return
    if not isinstance(node, dict):
        return
    for kind, body in node.items():
        if kind == "SelectStmt" and isinstance(body, dict):
            scope = _from_scope(body.get("fromClause", []))
            # output names (ORDER BY name) are not columns: "=" marks them
            for target in body.get("targetList", []):
                label = target.get("ResTarget", {}).get("name")
                if label:
                    scope["=" + label] = None
            inner = [*scopes, scope]
            for value in body.values():
                yield from _walk(value, inner)
            continue
        if kind in ("FuncCall", "RangeVar", "ColumnRef"):
            yield kind, body, scopes
        if isinstance(body, (dict, list)):
            yield from _walk(body, scopes)


def _from_scope(from_clause: Any) -> dict[str, tuple[str, str] | None]:
    """Alias -> (schema, relation) for catalogue relations; None for others."""
    scope: dict[str, tuple[str, str] | None] = {}

    def visit(item: Any) -> None:
        if isinstance(item, list):
            for x in item:
                visit(x)
        elif isinstance(item, dict):
            if "RangeVar" in item:
                rv = item["RangeVar"]
                name = (rv.get("alias") or {}).get("aliasname") or rv["relname"]
                scope[name] = _catalog_relation(rv)
            elif "JoinExpr" in item:
                visit(item["JoinExpr"].get("larg"))
                visit(item["JoinExpr"].get("rarg"))
            else:
                for key in ("RangeSubselect", "RangeFunction"):
                    if key in item:
                        alias = (item[key].get("alias") or {}).get("aliasname")
                        if alias:
                            scope[alias] = None

    visit(from_clause)
    return scope


def _catalog_relation(rv: dict[str, Any]) -> tuple[str, str] | None:
    schema = rv.get("schemaname")
    name = rv["relname"]
    if schema in CATALOG_SCHEMAS:
        return (schema, name)
    if schema is None and ("pg_catalog", name) in _catalog():
        return ("pg_catalog", name)  # pg_catalog is always on the search path
    if schema is None and name.startswith("pg_"):
        return ("pg_catalog", name)
    return None


def _check_tree(tree: Any) -> list[str]:
    catalog = _catalog()
    present, verdicts = _builtins()
    found: list[str] = []
    for kind, node, scopes in _walk(tree, []):
        if kind == "FuncCall":
            parts = [p.lower() for p in _names(node["funcname"])]
            name = parts[-1]
            if len(parts) > 1 and parts[0] not in (*CATALOG_SCHEMAS, "crdb_internal"):
                continue  # a user-defined function in a user schema
            if name not in present:
                why = verdicts.get(name, "not a CockroachDB builtin")
                found.append(
                    f"function {'.'.join(parts)}() at CockroachDB "
                    f"v{MIN_CRDB[0]}.{MIN_CRDB[1]}: {why} "
                    "(tests/crdb_facts/builtins.json)"
                )
        elif kind == "RangeVar":
            rel = _catalog_relation(node)
            if rel is not None and rel not in catalog:
                found.append(
                    f"relation {rel[0]}.{rel[1]} does not exist in CockroachDB "
                    "(tests/crdb_facts/catalog_tables.json)"
                )
        else:
            found.extend(_check_column(_names(node["fields"]), scopes, catalog))
    return found


def _check_column(
    fields: list[str],
    scopes: list[dict[str, tuple[str, str] | None]],
    catalog: dict[tuple[str, str], frozenset[str] | None],
) -> list[str]:
    if not fields:
        return []  # SELECT *
    column = fields[-1]
    rel: tuple[str, str] | None = None
    if len(fields) >= 2:
        qualifier = fields[-2]
        for scope in reversed(scopes):
            if qualifier in scope:
                rel = scope[qualifier]
                break
    else:
        inner = scopes[-1] if scopes else {}
        relations = [v for k, v in inner.items() if not k.startswith("=")]
        if len(relations) == 1 and "=" + column not in inner:
            rel = relations[0]
    columns = catalog.get(rel) if rel is not None else None
    if columns is None or column in columns:
        return []
    assert rel is not None
    return [
        f"column {rel[0]}.{rel[1]}.{column} does not exist in CockroachDB "
        "(tests/crdb_facts/catalog_tables.json)"
    ]


def problems(sql: str) -> list[str]:
    """Everything CockroachDB would not accept in ``sql``; empty when fine."""
    try:
        statements, found = to_postgresql(sql)
    except ValueError as e:  # unknown clause, unbalanced parentheses
        return [str(e)]
    for statement in statements:
        try:
            tree = json.loads(parse_sql_json(statement))
        except ParseError as e:
            found.append(f"syntax: {e} in {statement!r}")
            continue
        found.extend(_check_tree(tree))
    return found


def assert_conforms(sql: str) -> None:
    found = problems(sql)
    assert not found, f"{sql}\n" + "\n".join(f"  - {p}" for p in found)
