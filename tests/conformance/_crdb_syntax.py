"""CockroachDB-only syntax PostgreSQL's parser cannot read, rewritten before parsing.

Each form is CockroachDB grammar (cockroach
``docs/generated/sql/bnf/stmt_block.bnf``, generated from
``pkg/sql/parser/sql.y``; production names below), so the checker must not
flag it; it is rewritten into what PostgreSQL's parser reads, or, for whole
statements PostgreSQL has no counterpart for, recognised and left unparsed
(:func:`crdb_only_statement`). Searches run on :func:`mask`, so a keyword in a
string literal, quoted identifier or comment is never rewritten.
"""

from __future__ import annotations

import re

__all__ = [
    "closing",
    "crdb_only_statement",
    "mask",
    "rewrite",
    "rewrite_column",
    "row_sources",
    "split_statements",
    "strip_table_suffix",
]

_DOLLAR = re.compile(r"\$(\w*)\$")


def mask(sql: str) -> str:
    """``sql`` with the insides of literals, quoted names and comments blanked.

    Same length, so offsets found in the mask apply to ``sql``.
    """
    out = list(sql)
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch in "'\"":
            j = i + 1
            while j < len(sql):
                if sql[j] == ch and sql[j + 1 : j + 2] == ch:
                    j += 2
                    continue
                if sql[j] == ch:
                    break
                j += 1
            out[i + 1 : j] = " " * (j - i - 1)
            i = j + 1
        elif ch == "$" and (m := _DOLLAR.match(sql, i)):
            end = sql.find(m[0], m.end())
            end = len(sql) if end < 0 else end
            out[m.end() : end] = " " * (end - m.end())
            i = end + len(m[0])
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        else:
            i += 1
    return "".join(out)


def split_statements(message: str) -> list[str]:
    """The statements of a simple-query message, split at top-level ``;``."""
    masked = mask(message)
    out, depth, start = [], 0, 0
    for i, ch in enumerate(masked):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ";" and depth == 0:
            out.append(message[start:i])
            start = i + 1
    out.append(message[start:])
    return [s for s in (p.strip() for p in out) if mask(s).strip()]


def closing(masked: str, i: int) -> int:
    """Index after the bracket closing the one at ``masked[i]``; -1 if none."""
    pair = {"(": ")", "[": "]"}[masked[i]]
    depth = 0
    for j in range(i, len(masked)):
        depth += {masked[i]: 1, pair: -1}.get(masked[j], 0)
        if depth == 0:
            return j + 1
    return -1


_ROW_SOURCE = re.compile(r"(\bFROM|\bJOIN|,)\s*\[", re.I)


def row_sources(sql: str, inner: list[str]) -> str:
    """``FROM [SHOW ...]`` / ``[INSERT ... RETURNING ...]``: ``table_ref ::= '['
    row_source_extension_stmt ']'`` becomes a relation name; the bracketed
    statement goes to ``inner`` to be checked on its own."""
    while m := _ROW_SOURCE.search(mask(sql)):
        start = m.end() - 1
        end = closing(mask(sql), start)
        if end < 0:
            raise ValueError(f"unbalanced '[' in {sql!r}")
        inner.append(sql[start + 1 : end - 1])
        sql = f"{sql[:start]}crdb_row_source{sql[end:]}"
    return sql


_PRIORITY = re.compile(r",?\s*\bPRIORITY\s+(LOW|NORMAL|HIGH)\b\s*,?", re.I)
_TRANSACTION = re.compile(
    r"\s*(BEGIN|START\s+TRANSACTION|SET\s+(SESSION\s+)?TRANSACTION|"
    r"SET\s+SESSION\s+CHARACTERISTICS)\b",
    re.I,
)

#: (pattern on the masked text, replacement): each a CockroachDB production
_REWRITES: list[tuple[re.Pattern[str], str]] = [
    # alter_table_cmd: ALTER PRIMARY KEY USING COLUMNS (...) opt_hash_sharded
    # opt_with_storage_parameter_list
    (
        re.compile(
            r"\bALTER\s+PRIMARY\s+KEY\s+USING\s+COLUMNS\s*(\([^)]*\))"
            r"(\s+USING\s+HASH)?(\s+WITH\s*\([^)]*\))?",
            re.I,
        ),
        r"ADD PRIMARY KEY \1\3",
    ),
    # col_qualification_elem / constraint_elem: PRIMARY KEY [(...)] USING HASH
    # [WITH BUCKET_COUNT = n]
    (
        re.compile(
            r"(\bPRIMARY\s+KEY(?:\s*\([^)]*\))?)\s+USING\s+HASH"
            r"(?:\s+WITH\s+BUCKET_COUNT\s*=\s*\d+)?",
            re.I,
        ),
        r"\1",
    ),
    # joined_table: join_type opt_join_hint JOIN (HASH, MERGE, LOOKUP,
    # INVERTED, STRAIGHT)
    (
        re.compile(
            r"\b(INNER|LEFT|RIGHT|FULL|CROSS)(\s+OUTER)?\s+"
            r"(HASH|MERGE|LOOKUP|INVERTED|STRAIGHT)\s+JOIN\b",
            re.I,
        ),
        r"\1\2 JOIN",
    ),
    # a_expr: 'TYPEANNOTATE' typename (x:::INT8)
    (re.compile(r":::"), "::"),
    # transaction_mode: transaction_user_priority (BEGIN / SET TRANSACTION)
    (_PRIORITY, " "),
]


def rewrite(sql: str) -> str:
    """The statement-wide rewrites of :data:`_REWRITES`, outside literals."""
    transaction = _TRANSACTION.match(mask(sql)) is not None
    for pattern, replacement in _REWRITES:
        if pattern is _PRIORITY and not transaction:
            continue
        while m := pattern.search(mask(sql)):
            sql = sql[: m.start()] + m.expand(replacement) + sql[m.end() :]
    if re.fullmatch(r"\s*SET\s+(SESSION\s+)?TRANSACTION\s*", sql, re.I):
        # only a priority was set: any mode PostgreSQL reads keeps it parseable
        sql += " ISOLATION LEVEL SERIALIZABLE"
    return sql


_ON_UPDATE = re.compile(
    r"\bON\s+UPDATE\s+(?!CASCADE\b|RESTRICT\b|SET\s+NULL\b|SET\s+DEFAULT\b|NO\s+ACTION\b)"
    r"(\w+\s*\([^()]*\)|[\w.:']+)",
    re.I,
)
_NOT_VISIBLE = re.compile(r"\bNOT\s+VISIBLE\b", re.I)
_CREATE_FAMILY = re.compile(
    r"\bCREATE\s+(IF\s+NOT\s+EXISTS\s+)?FAMILY(\s+(\"[^\"]+\"|\w+))?", re.I
)


def rewrite_column(element: str) -> str:
    """``col_qualification`` forms PostgreSQL lacks: ``NOT VISIBLE``,
    ``ON UPDATE b_expr`` (not a foreign key's action), ``CREATE FAMILY``."""
    for pattern in (_NOT_VISIBLE, _ON_UPDATE, _CREATE_FAMILY):
        while m := pattern.search(mask(element)):
            element = element[: m.start()] + element[m.end() :]
    return element


_LOCALITY = re.compile(r"\bLOCALITY\s+(GLOBAL|REGIONAL\b.*)$", re.I | re.S)
_PARTITION = re.compile(r"\bPARTITION\s+(ALL\s+)?BY\s+(LIST|RANGE)\s*\(", re.I)


def strip_table_suffix(after: str) -> str:
    """What follows ``CREATE TABLE t (...)``: ``opt_locality`` and
    ``partition_by_table`` (``PARTITION [ALL] BY LIST|RANGE (cols) (...)``,
    with its partitions inline) are CockroachDB's."""
    masked = mask(after)
    if m := _LOCALITY.search(masked):
        after, masked = after[: m.start()], masked[: m.start()]
    if m := _PARTITION.search(masked):
        columns_end = closing(masked, m.end() - 1)
        nxt = re.match(r"\s*\(", masked[columns_end:]) if columns_end > 0 else None
        if nxt is None:
            return after  # no partitions inline: PostgreSQL's form, left to refuse
        end = closing(masked, columns_end + nxt.end() - 1)
        if end < 0:
            raise ValueError(f"unbalanced '(' in {after!r}")
        after = after[: m.start()] + after[end:]
    return after


#: Whole statements PostgreSQL has no counterpart for (stmt_block.bnf).
_CRDB_ONLY = re.compile(
    r"^\s*("
    r"SHOW\b|"  # show_stmt: CockroachDB's SHOW forms (SHOW CREATE, RANGES, ...)
    r"(SET|RESET)\s+CLUSTER\s+SETTING\b|"  # set_csetting_stmt, reset_csetting_stmt
    r"(BACKUP|RESTORE|IMPORT|EXPORT)\b|"  # backup_stmt, restore_stmt, ...
    r"(CANCEL|PAUSE|RESUME)\s+(ALL\s+\w+\s+)?(JOBS?|QUERY|QUERIES|SESSIONS?|SCHEDULES?)\b|"
    r"CREATE\s+(CHANGEFEED|SCHEDULE|EXTERNAL\s+CONNECTION)\b|"
    r"ALTER\s+(TABLE|INDEX|DATABASE|RANGE|PARTITION)\b[^;]*\bCONFIGURE\s+ZONE\b|"
    r"ALTER\s+(TABLE|INDEX)\s+\S+\s+(SPLIT\s+AT|UNSPLIT|SCATTER|"
    r"(EXPERIMENTAL_|TESTING_)?RELOCATE)\b|"
    r"ALTER\s+INDEX\s+(IF\s+EXISTS\s+)?\S+\s+(NOT\s+VISIBLE|VISIBLE|INVISIBLE|"
    r"VISIBILITY)\b|"  # alter_index_visible_stmt
    r"ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?\S+\s+SET\s+LOCALITY\b|"
    # alter_table_cmd: alter_column_visible, DROP STORED, alter_column_on_update
    r"ALTER\s+TABLE\b.*\bALTER\s+(COLUMN\s+)?\S+\s+(SET\s+(NOT\s+)?VISIBLE|"
    r"DROP\s+STORED|SET\s+ON\s+UPDATE|DROP\s+ON\s+UPDATE)\b|"
    r"ALTER\s+DATABASE\s+\S+\s+(ADD|DROP|SET|ALTER)\s+(SUPER\s+|SECONDARY\s+)?"
    r"(PRIMARY\s+)?REGION\b|"
    r"ALTER\s+DATABASE\s+\S+\s+(SURVIVE|PLACEMENT)\b|"
    r"EXPLAIN\s+ANALY[SZ]E\s*\(|"  # explain_stmt: EXPLAIN ANALYZE (options)
    r"EXPERIMENTAL\s+SCRUB\b|USE\s+\w+\s*$"
    r")",
    re.I | re.S,
)


def crdb_only_statement(sql: str) -> bool:
    """A statement only CockroachDB has, which PostgreSQL's parser cannot read."""
    return _CRDB_ONLY.match(mask(sql)) is not None
