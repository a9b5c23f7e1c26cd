"""Parse CockroachDB's ``pg_indexes.indexdef`` text into SQLAlchemy's index dict.

CockroachDB prints an index definition with its own clauses (``STORING``,
``USING HASH``, ``INVERTED``, ``VECTOR``, operator classes, visibility), which
SQLAlchemy's PostgreSQL reflection cannot read: :func:`parse_crdb_indexdef`
returns the dict ``Inspector.get_indexes`` expects, with the CockroachDB
options as ``dialect_options["cockroachdb_*"]``; :func:`parse_crdb_index_clause`
does the same for the ``INDEX ...`` clause of ``SHOW CREATE TABLE``. Pure
functions, tested against every recorded row in tests/crdb_facts/indexes.json
(tests/dialect/test_indexdef_golden.py, tests/dialect/test_index_visibility.py).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "parse_crdb_index_clause",
    "parse_crdb_indexdef",
    "split_top_level",
    "strip_type_annotations",
]

# CockroachDB before ~v21 annotated literals in defaults and computed
# expressions ("9:::INT8", "a + 1:::INT8"); newer versions do not, except for
# enum labels (tests/crdb_facts/information_schema_columns.json with_defaults_v20_2,
# computed_v20_2, enum_default).
_ANNOTATION = re.compile(
    r":::(?:[A-Za-z_][\w.]*|\"[^\"]+\")(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])*"
)


def strip_type_annotations(expression: str | None) -> str | None:
    """``"9:::INT8"`` -> ``"9"``; ``"'hi':::public.greeting"`` -> ``"'hi'"``.

    Text inside string literals is left alone.
    """
    if expression is None:
        return None
    out: list[str] = []
    for i, part in enumerate(re.split(r"('(?:[^']|'')*')", expression)):
        out.append(part if i % 2 else _ANNOTATION.sub("", part))
    return "".join(out)


_INDEXDEF = re.compile(
    r"""^CREATE\s+(?P<unique>UNIQUE\s+)?(?P<inverted>INVERTED\s+)?(?P<vector>VECTOR\s+)?
        INDEX\s+
        (?P<name>"(?:[^"]|"")+"|\S+)\s+ON\s+(?P<table>\S+)\s+
        (?:USING\s+(?P<using>\w+)\s+)?
        \((?P<rest>.*)$""",
    re.VERBOSE | re.IGNORECASE | re.DOTALL,
)
_SORT = re.compile(
    r"^(?P<expr>.*?)(?:\s+(?P<dir>ASC|DESC))?(?:\s+NULLS\s+(?P<nulls>FIRST|LAST))?$",
    re.IGNORECASE | re.DOTALL,
)
_IDENT = re.compile(r'^(?:[A-Za-z_][\w$]*|"(?:[^"]|"")+")$')
# An operator class after a key column: " gin_trgm_ops" for a trigram index,
# " vector_l2_ops" for a vector index (catformat FormatIndexElements, below).
_OPCLASS = re.compile(r"^(?P<expr>.*?)\s+(?P<ops>[A-Za-z_]\w*_ops)$", re.DOTALL)
# The visibility suffix, last in both print modes: " NOT VISIBLE" (v22.2+) or
# " VISIBILITY 0.xx" (v23.2+, "%.2f" of the visible fraction); cockroach
# pkg/sql/catalog/catformat/index.go @0399fa0e31eb9607d5708d70e504cf7aaba94ddc.
_VISIBILITY = re.compile(
    r"(?:^|\s)(?:NOT\s+VISIBLE|VISIBILITY\s+(?P<fraction>\d+(?:\.\d+)?))\s*$",
    re.IGNORECASE,
)


def split_top_level(text_: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses, brackets and quotes."""
    parts, depth, quote, buf = [], 0, "", []
    for ch in text_:
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    if buf and "".join(buf).strip():
        parts.append("".join(buf).strip())
    return parts


def _matching_paren(text_: str) -> int:
    """Index of the ``)`` closing the ``(`` that ``text_`` starts after."""
    depth, quote = 1, ""
    for i, ch in enumerate(text_):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def _unquote(name: str) -> str:
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and _matching_paren(expr[1:]) == len(expr) - 2:
        expr = expr[1:-1].strip()
    return expr


def parse_crdb_indexdef(indexdef: str) -> dict[str, Any]:
    """Parse CockroachDB's ``pg_indexes.indexdef`` into a reflected index dict.

    Handles the forms in tests/crdb_facts/indexes.json: ``<db>.<schema>.<table>``
    qualification, explicit ``ASC``/``DESC``, ``STORING (...)``,
    ``USING HASH WITH (bucket_count=N)``, ``WHERE (...)``, expressions,
    inverted indexes (``CREATE INVERTED INDEX`` or ``USING gin``/``inverted``),
    operator classes (``gin_trgm_ops``: ``cockroachdb_ops``), vector indexes
    (``USING cspann``: ``cockroachdb_vector``) and the visibility suffix
    (``cockroachdb_visibility``: 0.0 for ``NOT VISIBLE``, the fraction for
    ``VISIBILITY``).
    Raises ValueError, quoting the text, when it is not an index definition.
    """
    match = _INDEXDEF.match(indexdef.strip())
    if match is None:
        raise ValueError(f"not a CockroachDB index definition: {indexdef!r}")
    rest = match["rest"]
    close = _matching_paren(rest)
    elements = split_top_level(rest[:close])
    tail = rest[close + 1 :].strip()

    options: dict[str, Any] = {}
    using = (match["using"] or "").lower()
    if match["inverted"] or using in ("gin", "inverted"):
        options["cockroachdb_inverted"] = True
    if match["vector"] or using == "cspann":
        options["cockroachdb_vector"] = True
    visibility = _VISIBILITY.search(tail)
    if visibility:
        fraction = visibility["fraction"]
        options["cockroachdb_visibility"] = float(fraction) if fraction else 0.0
        tail = tail[: visibility.start()].strip()
    hash_match = re.match(
        r"USING\s+HASH(?:\s+WITH\s+\(bucket_count\s*=\s*(\d+)\))?\s*",
        tail,
        re.IGNORECASE,
    )
    if hash_match:
        options["cockroachdb_hash_sharded"] = True
        if hash_match[1]:
            options["cockroachdb_bucket_count"] = int(hash_match[1])
        tail = tail[hash_match.end() :]
    storing_match = re.match(r"STORING\s+\(", tail, re.IGNORECASE)
    if storing_match:
        body = tail[storing_match.end() :]
        end = _matching_paren(body)
        options["cockroachdb_storing"] = [
            _unquote(c) for c in split_top_level(body[:end])
        ]
        tail = body[end + 1 :].strip()
    where_match = re.match(r"WHERE\s+(.*)$", tail, re.IGNORECASE | re.DOTALL)
    if where_match:
        predicate = strip_type_annotations(_strip_parens(where_match[1]))
        options["cockroachdb_where"] = predicate
        tail = ""
    if tail:
        raise ValueError(f"unparsed index definition tail {tail!r} in {indexdef!r}")

    column_names: list[str | None] = []
    expressions: list[str] = []
    sorting: dict[str, tuple[str, ...]] = {}
    ops: dict[str, str] = {}
    has_expression = False
    for element in elements:
        parts = _SORT.match(element)
        assert parts is not None  # the pattern matches any text
        expr = parts["expr"].strip()
        opclass = _OPCLASS.match(expr)
        if opclass:
            expr = opclass["expr"].strip()
        if _IDENT.match(expr):
            name: str = _unquote(expr)
            column_names.append(name)
        else:
            name = _strip_parens(expr)
            column_names.append(None)
            has_expression = True
        expressions.append(name)
        if opclass:
            ops[name] = opclass["ops"]
        flags: tuple[str, ...] = ()
        if (parts["dir"] or "").upper() == "DESC":
            flags += ("desc",)
        if parts["nulls"]:
            flags += (f"nulls_{parts['nulls'].lower()}",)
        if flags:
            sorting[name] = flags

    index: dict[str, Any] = {
        "name": _unquote(match["name"]),
        "unique": bool(match["unique"]),
        "column_names": column_names,
    }
    if has_expression:
        index["expressions"] = expressions
    if sorting:
        index["column_sorting"] = sorting
    if ops:
        options["cockroachdb_ops"] = ops
    if options:
        index["dialect_options"] = options
    return index


# contype is the one-byte "char" type, which asyncpg returns as bytes: cast it.
_CLAUSE = re.compile(
    r"""^(?:CONSTRAINT\s+(?P<pk>"(?:[^"]|"")+"|\S+)\s+PRIMARY\s+KEY
        |(?P<unique>UNIQUE\s+)?(?P<inverted>INVERTED\s+)?(?P<vector>VECTOR\s+)?INDEX\s+
         (?P<name>"(?:[^"]|"")+"|\S+))
        \s*\((?P<rest>.*)$""",
    re.VERBOSE | re.IGNORECASE | re.DOTALL,
)


def parse_crdb_index_clause(clause: str) -> dict[str, Any]:
    """Parse an index line of ``SHOW CREATE TABLE`` output, as a reflected index.

    ``INDEX t6_a_idx (a ASC) WHERE a > 0:::INT8``, ``UNIQUE INDEX ...``,
    ``INVERTED INDEX c_foo_idx (foo)``, ``... USING HASH WITH (bucket_count=4)``
    and ``CONSTRAINT t_pkey PRIMARY KEY (a ASC)``
    (tests/crdb_facts/indexes.json ``show_create_indexes``); for tools that read
    CockroachDB DDL dumps.
    Raises ValueError, quoting the line, for anything else.
    """
    text_ = clause.strip().rstrip(",").strip()
    match = _CLAUSE.match(text_)
    if match is None:
        raise ValueError(f"not a CockroachDB index clause: {clause!r}")
    if match["pk"]:
        head = f"CREATE UNIQUE INDEX {match['pk']}"
    else:
        head = "CREATE {}{}{}INDEX {}".format(
            "UNIQUE " if match["unique"] else "",
            "INVERTED " if match["inverted"] else "",
            "VECTOR " if match["vector"] else "",
            match["name"],
        )
    return parse_crdb_indexdef(f"{head} ON t ({match['rest']}")
