"""The CockroachDB conformance checker: would CockroachDB accept this statement?

``problems(sql, release=...)`` returns what CockroachDB ``release`` (default
the oldest of the support window, :data:`DEFAULT_RELEASE`; every release in
:data:`WINDOW`, tests/conformance/_releases.py) would refuse in ``sql``, one
statement or one simple-query message of several; an empty list when
nothing. ``transaction_problems([...])`` checks a statement sequence sent on
one session; ``assert_conforms(sql)`` fails a test with the list. Checks, each
with its source in the module that implements it:

1. **Functions** (:mod:`._rules_names`): every function called exists in that
   release's builtins (``tests/crdb_facts/builtins.json``).
2. **Catalogue** (:mod:`._rules_names`): every ``pg_catalog`` /
   ``information_schema`` relation read exists at that release, every column
   read from one is one of its columns (v26.3: the PostgreSQL-18 layout,
   ``tests/crdb_facts/catalog_v26.md``), and an unqualified column is not
   ambiguous between catalogue relations in scope.
3. **Statement kinds, clauses, types, system columns** (:mod:`._rules_kinds`):
   what CockroachDB's grammar has no production for or answers
   "unimplemented" (INHERITS, domains before v26.3, tablespaces, TABLESAMPLE,
   MERGE, EXCLUDE, ON COMMIT DROP / DELETE ROWS, VACUUM, DISCARD PLANS, table
   and unknown index access methods, PostgreSQL-style partitioning,
   constraint timing, LISTEN/NOTIFY, LOCK, ALTER TABLE commands outside
   ``alter_table_cmd``, ...), PostgreSQL types it lacks (money, xml, cidr,
   geometric, range types, ...), PostgreSQL system columns it lacks (ctid,
   xmin, ...). CockroachDB-only syntax is rewritten first
   (:mod:`._crdb_syntax`), on text whose literals and comments are masked.
4. **Transactions** (:mod:`._rules_txn`): AS OF SYSTEM TIME ends a FROM list,
   only on the top-level statement (not in a subquery, CTE, set-operation arm,
   ``INSERT ... SELECT``), never with a locking read; across statements,
   locking reads and writes in a read-only or AOST transaction, a statement
   AOST differing from its transaction's, ``SAVEPOINT cockroach_restart`` not
   first, ``DISCARD ALL`` inside a transaction (a multi-statement message is
   one implicit transaction).
5. **Clause order.** Index definitions (``CREATE INDEX`` and ``INDEX`` lines
   inside ``CREATE TABLE``) follow CockroachDB's grammar:
   columns, ``USING HASH``, ``STORING``, ``PARTITION ALL BY``, ``WITH (...)``,
   ``WHERE``, visibility (``tests/crdb_facts/grammar.md`` sections 1-2, the
   railroad diagrams generated from cockroach ``pkg/sql/parser/sql.y``; the
   same order in cockroach ``docs/generated/sql/bnf/stmt_block.bnf``,
   ``create_index_stmt`` and ``index_def``). An inverted or vector index has
   no ``USING HASH``, ``STORING`` or ``UNIQUE`` (``pkg/sql/create_index.go``
   refuses them; ``pkg/sql/sem/idxtype/idxtype.go``), and an operator class
   goes only on the last column of an inverted or vector index.
6. **Syntax.** What is left must parse with PostgreSQL's parser.

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
    rewrites or strips: ``UPSERT INTO`` -> ``INSERT INTO``; ``[SHOW ...]`` /
    ``[INSERT ... RETURNING ...]`` row sources -> a relation name (the
    bracketed statement is checked on its own unless it is SHOW or EXPLAIN);
    ``ALTER PRIMARY KEY USING COLUMNS (...)`` -> ``ADD PRIMARY KEY (...)``;
    ``PRIMARY KEY ... USING HASH`` loses ``USING HASH``; index hints
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

Limits (said so the layer is not trusted beyond them): CockroachDB-only
statements (:func:`._crdb_syntax.crdb_only_statement`) are recognised by their
first words, not parsed; the catalogue is one
era up to v26.2 and the PostgreSQL-18 one at v26.3, so a column added in
between passes; an unqualified column is checked only against catalogue
relations; session variable names in ``SET`` are not checked; what a
statement means, returns or costs, and how the server behaves under load or
with data, are not checked at all (README "What has been verified how").
"""

from __future__ import annotations

import json
import re

from pglast.parser import ParseError, parse_sql_json

from sqlalchemy_crdb_async.dialect.indexdef import (
    _matching_paren as matching_paren,  # the dialect's own paren matcher
)
from sqlalchemy_crdb_async.dialect.indexdef import split_top_level
from tests.conformance._crdb_syntax import (
    crdb_only_statement,
    mask,
    rewrite,
    rewrite_column,
    row_sources,
    split_statements,
    strip_table_suffix,
)
from tests.conformance._releases import RELEASES, WINDOW
from tests.conformance._rules_kinds import kind_problems, text_problems
from tests.conformance._rules_names import name_problems, names
from tests.conformance._rules_txn import (
    Analysed,
    Aost,
    aost_problems,
    sequence_problems,
    strip_aost,
)

__all__ = [
    "DEFAULT_RELEASE",
    "INDEX_CLAUSE_ORDER",
    "MIN_CRDB",
    "WINDOW",
    "assert_conforms",
    "index_clauses",
    "problems",
    "split_statements",
    "to_postgresql",
    "transaction_problems",
]

#: The oldest CockroachDB release in the support window (README).
MIN_CRDB = (24, 3)
#: The release :func:`problems` checks against unless told otherwise.
DEFAULT_RELEASE = WINDOW[0]

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
        f"operator class {names(e['IndexElem']['opclass'])[-1]} on "
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
    r"^(?P<unique>UNIQUE\s+)?(?P<kind>INVERTED\s+|VECTOR\s+)?INDEX\b\s*"
    r"(?P<name>[^\s(]+)?\s*(?P<rest>\(.*)$",
    re.I | re.S,
)
_COMPUTED = re.compile(r"(?<!ALWAYS )\bAS\s*\(", re.I)
_FAMILY = re.compile(r"\bFAMILY\s+(\"[^\"]+\"|\w+)(\s*\([^)]*\))?", re.I)


def _rewrite_column(element: str) -> str:
    element = _FAMILY.sub("", rewrite_column(element))
    m = _COMPUTED.search(element)
    if m and re.search(r"\)\s*(STORED|VIRTUAL)\b", element, re.I):
        element = element[: m.start()] + "GENERATED ALWAYS " + element[m.start() :]
    return element


def _rewrite_create_table(sql: str, issues: list[str]) -> list[str]:
    open_ = sql.index("(")
    close = _skip_parens(sql, open_)
    head, body, after = sql[:open_], sql[open_ + 1 : close - 1], sql[close:]
    table = re.sub(
        r"^\s*CREATE\s+((LOCAL|GLOBAL)\s+)?(TEMPORARY\s+|TEMP\s+|UNLOGGED\s+)?"
        r"TABLE\s+(IF\s+NOT\s+EXISTS\s+)?",
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
                f"CREATE {unique}INDEX {m['name'] or ''} ON {table.strip()} "
                f"{columns} {_pg_index_tail(tail)}"
            )
        elif re.match(r"^FAMILY\b", element, re.I):
            continue
        else:
            kept.append(_rewrite_column(element))
    return [f"{head}({', '.join(kept)}){strip_table_suffix(after)}", *extra]


_INDEX_HINT = re.compile(r"@(\{[^}]*\}|\"[^\"]+\"|\w+)")


def _without_index_hints(sql: str) -> str:
    """``t@idx`` / ``t@{FORCE_INDEX=...}`` (``opt_index_flags``) removed."""
    while m := _INDEX_HINT.search(mask(sql)):
        sql = sql[: m.start()] + sql[m.end() :]
    return sql


def to_postgresql(
    sql: str, aost: list[Aost] | None = None, inner: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """``(statements PostgreSQL's parser can read, clause-order problems)``.

    ``aost`` collects the AS OF SYSTEM TIME clauses removed, ``inner`` the
    statements of ``[...]`` row sources.
    """
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
    sql = _without_index_hints(sql)
    sql = row_sources(sql, inner if inner is not None else [])
    sql = rewrite(sql)
    sql = strip_aost(sql, issues, aost if aost is not None else [])
    if _CREATE_INDEX.match(sql):
        return [_rewrite_create_index(sql, issues)], issues
    if re.match(
        r"^\s*CREATE\s+((LOCAL|GLOBAL)\s+)?(TEMPORARY\s+|TEMP\s+|UNLOGGED\s+)?"
        r"TABLE\s+(IF\s+NOT\s+EXISTS\s+)?[^\s(]+\s*\(",
        mask(sql),
        re.I,
    ):
        return _rewrite_create_table(sql, issues), issues
    if re.match(r"^\s*ALTER\s+TABLE\b.*\bADD\s+COLUMN\b", sql, re.I | re.S):
        return [_rewrite_column(sql)], issues
    return [sql], issues


def _analyse(sql: str, release: str, found: list[str]) -> Analysed:
    """Rewrite, parse and check one statement; its problems go to ``found``."""
    version = RELEASES[release].version
    aost: list[Aost] = []
    inner: list[str] = []
    try:
        statements, issues = to_postgresql(sql, aost, inner)
    except ValueError as e:  # unknown clause, unbalanced parentheses
        found.append(str(e))
        return Analysed(sql, [], aost)
    found.extend(issues)
    if crdb_only_statement(sql):
        return Analysed(sql, [], aost)  # CockroachDB's own statement kinds
    found.extend(text_problems(mask(sql)))
    for nested in inner:
        # SHOW and EXPLAIN are CockroachDB's own statements PostgreSQL's
        # parser does not read: only the data-changing and SELECT ones are
        # checked
        if not re.match(r"\s*(SHOW|EXPLAIN)\b", nested, re.I):
            found.extend(problems(nested, release=release))
    trees = []
    for statement in statements:
        try:
            tree = json.loads(parse_sql_json(statement))
        except ParseError as e:
            found.append(f"syntax: {e} in {statement!r}")
            continue
        trees.append(tree)
        found.extend(name_problems(tree, release))
        found.extend(kind_problems(tree, version))
    if trees:
        found.extend(aost_problems(trees[0], aost))
    return Analysed(sql, trees, aost)


def problems(sql: str, *, release: str = DEFAULT_RELEASE) -> list[str]:
    """Everything CockroachDB ``release`` would not accept in ``sql``.

    Empty when fine. ``sql`` is one statement or one simple-query message of
    several (run by CockroachDB as one implicit transaction: the sequence
    rules of :func:`transaction_problems` apply to it too).
    """
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; known: {list(RELEASES)}")
    parts = split_statements(sql)
    found: list[str] = []
    analysed = [_analyse(part, release, found) for part in parts]
    if len(parts) > 1:
        found.extend(sequence_problems(analysed, implicit=True))
    return found


def transaction_problems(
    statements: list[str], *, release: str = DEFAULT_RELEASE
) -> list[str]:
    """Problems of a statement sequence sent one by one on one session.

    Each statement's own :func:`problems`, plus the rules across statements
    (:mod:`tests.conformance._rules_txn`): locking reads and writes in a
    read-only or AOST transaction, a statement AOST that differs from the
    transaction's, ``SAVEPOINT cockroach_restart`` not first, ``DISCARD ALL``
    inside a transaction.
    """
    found: list[str] = []
    analysed = []
    for sql in statements:
        found.extend(problems(sql, release=release))
        analysed.append(_analyse(sql, release, []))
    return found + sequence_problems(analysed, implicit=False)


def assert_conforms(sql: str, *, release: str = DEFAULT_RELEASE) -> None:
    found = problems(sql, release=release)
    assert not found, f"{release}: {sql}\n" + "\n".join(f"  - {p}" for p in found)
