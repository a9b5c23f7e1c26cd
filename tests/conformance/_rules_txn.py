"""Checker rules on transactions: AS OF SYSTEM TIME placement and read-only work.

Sources:

- AOST syntax: it ends the FROM list (tests/crdb_facts/grammar.md section 7;
  cockroach ``docs/generated/sql/bnf/stmt_block.bnf``: ``from_clause ::= 'FROM'
  from_list opt_as_of_clause``), so ORDER BY, LIMIT, FETCH, OFFSET, FOR
  (locking), set operators, WHERE, GROUP BY, HAVING and WINDOW may follow it.
- AOST only on the top-level statement: cockroach ``pkg/sql/opt/optbuilder``
  ``validateAsOf``: "AS OF SYSTEM TIME must be provided on a top-level
  statement" (42601) for a clause in a subquery, CTE, set-operation arm or
  ``INSERT ... SELECT``, unless the top-level SELECT carries the same one
  (a different one: "cannot specify AS OF SYSTEM TIME with different
  timestamps").
- An AOST transaction is read-only: a locking read (``FOR UPDATE``/``SHARE``)
  or a write in it fails "cannot execute ... in a read-only transaction"
  (tests/crdb_facts/errors_more.json ``as_of_system_time``, docs
  ``v26.2/as-of-system-time.md``); so does one in ``BEGIN ... READ ONLY`` /
  ``SET TRANSACTION READ ONLY`` / ``default_transaction_read_only``.
- In an explicit transaction a statement's AOST must equal the transaction's
  (``inconsistent AS OF SYSTEM TIME timestamp``,
  tests/crdb_facts/errors_more.json, cockroach
  ``pkg/sql/conn_executor_exec.go``).
- ``SAVEPOINT cockroach_restart`` must be the transaction's first statement
  (tests/crdb_facts/errors_more.json ``savepoint_cockroach_restart_not_first``).
- ``DISCARD ALL`` only outside a transaction block (cockroach
  ``pkg/sql/discard.go``: "DISCARD ALL cannot run inside a transaction block",
  25001, checked with ``p.autoCommit``); INFERRED: also not before the last
  statement of a multi-statement message, which runs as one implicit
  transaction that cannot auto-commit before its end (PostgreSQL refuses it
  there too: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.conformance._crdb_syntax import closing, mask

__all__ = ["Analysed", "Aost", "aost_problems", "sequence_problems", "strip_aost"]


@dataclass(frozen=True)
class Aost:
    """One ``AS OF SYSTEM TIME`` clause found in a statement's text."""

    argument: str
    depth: int  #: parenthesis depth: 0 = the top-level statement
    mode: bool  #: a transaction mode (BEGIN / SET TRANSACTION), not a FROM clause


@dataclass
class Analysed:
    """One statement after the rewrite and parse: what the sequence rules read."""

    sql: str
    trees: list[Any]
    aost: list[Aost] = field(default_factory=list)


_AOST = re.compile(r"\bAS\s+OF\s+SYSTEM\s+TIME\s+", re.I)
_AOST_FOLLOWERS = re.compile(
    r"^\s*(\)|;|$|WHERE\b|GROUP\b|HAVING\b|WINDOW\b|ORDER\b|LIMIT\b|OFFSET\b|"
    r"FETCH\b|FOR\b|UNION\b|INTERSECT\b|EXCEPT\b)",
    re.I,
)
_AFTER_FROM = re.compile(
    r"\b(WHERE|GROUP\s+BY|HAVING|WINDOW|ORDER\s+BY|LIMIT|OFFSET)\b", re.I
)


def _depth(masked: str, end: int) -> int:
    return sum({"(": 1, ")": -1}.get(ch, 0) for ch in masked[:end])


def _argument_end(masked: str, i: int) -> int:
    """End of the ``a_expr`` after AS OF SYSTEM TIME: a literal, a number, a
    typed literal (``INTERVAL '-1s'``), a function call, each maybe cast."""
    m = re.match(r"(-?\s*[\w.]+\s*(?='))?('[^']*'|-?[\w.]+)(\s*\()?", masked[i:])
    if m is None:
        return i
    end = i + m.end()
    if m[3]:  # a call: to its closing parenthesis
        end = max(end, closing(masked, end - 1))
    while cast := re.match(r"\s*::\s*[\w.]+", masked[end:]):
        end += cast.end()
    return end


def strip_aost(sql: str, issues: list[str], found: list[Aost]) -> str:
    """``sql`` without its AOST clauses (PostgreSQL cannot parse them).

    Position problems go to ``issues``; each clause to ``found``.
    """
    while m := _AOST.search(masked := mask(sql)):
        start, i = m.start(), m.end()
        mode = re.match(
            r"\s*(BEGIN|START\s+TRANSACTION|SET\s+(SESSION\s+)?TRANSACTION|"
            r"SET\s+SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION)\b",
            masked[:start],
            re.I,
        )
        froms = list(re.finditer(r"\bFROM\b", masked[:start], re.I))
        if mode:
            pass  # BEGIN / SET TRANSACTION AS OF SYSTEM TIME: a transaction mode
        elif not froms:
            issues.append(f"AS OF SYSTEM TIME outside a FROM clause in {sql!r}")
        elif after := _AFTER_FROM.search(masked[froms[-1].end() : start]):
            issues.append(
                f"AS OF SYSTEM TIME must end the FROM list, not follow {after[0]!r}"
            )
        end = _argument_end(masked, i)
        if not mode and not _AOST_FOLLOWERS.match(masked[end:]):
            issues.append(
                "AS OF SYSTEM TIME must end the FROM list; found "
                f"{sql[end:]!r} after it"
            )
        found.append(Aost(sql[i:end].strip(), _depth(masked, start), bool(mode)))
        # an AOST transaction is read-only: what PostgreSQL can parse instead
        keep = " READ ONLY " if mode and mode[1].upper().startswith("SET") else " "
        if mode and (comma := re.match(r"\s*,", masked[end:])):
            end += comma.end()  # one transaction mode of a list
            keep = " READ ONLY, " if keep.strip() else " "
        elif mode and (comma := re.search(r",\s*$", masked[:start])):
            start = comma.start()
        sql = sql[:start] + keep + sql[end:]
    return sql


def _has(node: Any, key: str) -> bool:
    if isinstance(node, list):
        return any(_has(x, key) for x in node)
    if isinstance(node, dict):
        return any(k == key or _has(v, key) for k, v in node.items())
    return False


def _top(tree: Any) -> tuple[str, dict[str, Any]]:
    stmt = tree["stmts"][0]["stmt"]
    kind = next(iter(stmt))
    return kind, stmt[kind]


MUTATIONS = ("InsertStmt", "UpdateStmt", "DeleteStmt")


def aost_problems(tree: Any, uses: list[Aost]) -> list[str]:
    """Placement of a statement's own AOST clauses (not transaction modes)."""
    clauses = [u for u in uses if not u.mode]
    if not clauses:
        return []
    kind, body = _top(tree)
    found = []
    top = {u.argument for u in clauses if u.depth == 0}
    if kind in MUTATIONS:
        found.append(
            "AS OF SYSTEM TIME inside INSERT/UPDATE/DELETE: CockroachDB refuses "
            "it, it must be provided on a top-level statement (optbuilder "
            "validateAsOf, 42601)"
        )
    elif kind == "SelectStmt" and body.get("op", "SETOP_NONE") != "SETOP_NONE":
        found.append(
            "AS OF SYSTEM TIME in an arm of UNION/INTERSECT/EXCEPT: it must be "
            "provided on a top-level statement (optbuilder validateAsOf, 42601)"
        )
    else:
        for use in clauses:
            if use.depth > 0 and use.argument not in top:
                found.append(
                    f"AS OF SYSTEM TIME {use.argument} in a subquery or CTE: "
                    + (
                        "cannot specify AS OF SYSTEM TIME with different timestamps"
                        if top
                        else "it must be provided on a top-level statement"
                    )
                    + " (optbuilder validateAsOf)"
                )
    if _has(tree, "lockingClause"):
        found.append(
            "AS OF SYSTEM TIME with FOR UPDATE/SHARE: the transaction is read-only "
            "and CockroachDB refuses the locking read "
            "(tests/crdb_facts/errors_more.json as_of_system_time, 25006)"
        )
    return found


def _read_only_option(body: dict[str, Any]) -> bool:
    for option in body.get("options", []) or body.get("args", []):
        elem = option.get("DefElem", {})
        value = elem.get("arg", {}).get("A_Const", {}).get("ival", {}).get("ival")
        if elem.get("defname") == "transaction_read_only" and value == 1:
            return True
    return False


def sequence_problems(statements: list[Analysed], *, implicit: bool) -> list[str]:
    """Rules across the statements of one transaction or one message."""
    found: list[str] = []
    in_txn = read_only = session_read_only = False
    txn_aost: str | None = None
    first = True
    message_aost: str | None = None
    last = len(statements) - 1
    for index, item in enumerate(statements):
        where = f"statement {index + 1} ({item.sql.strip()[:60]!r})"
        modes = [u.argument for u in item.aost if u.mode]
        clauses = [u.argument for u in item.aost if not u.mode and u.depth == 0]
        for tree in item.trees:
            kind, body = _top(tree)
            if kind == "TransactionStmt":
                tkind = body.get("kind")
                if tkind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
                    in_txn, first = True, True
                    read_only = bool(modes) or _read_only_option(body)
                    txn_aost = modes[0] if modes else None
                    continue
                if tkind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK"):
                    in_txn = read_only = False
                    txn_aost = None
                    continue
                if (
                    tkind == "TRANS_STMT_SAVEPOINT"
                    and "cockroach_restart" in item.sql.lower()
                    and in_txn
                    and not first
                ):
                    found.append(
                        f"{where}: SAVEPOINT cockroach_restart must be the first "
                        "statement of the transaction "
                        "(tests/crdb_facts/errors_more.json "
                        "savepoint_cockroach_restart_not_first)"
                    )
            elif kind == "VariableSetStmt":
                name = str(body.get("name", "")).lower()
                on = any(
                    "on" in str(a).lower() or "true" in str(a).lower()
                    for a in body.get("args", [])
                )
                if name == "transaction":
                    read_only = read_only or bool(modes) or _read_only_option(body)
                    txn_aost = modes[0] if modes else txn_aost
                elif name == "session characteristics":
                    session_read_only = _read_only_option(body)
                elif name in ("default_transaction_read_only",):
                    session_read_only = on
                elif name == "transaction_read_only":
                    read_only = on
            elif (
                kind == "DiscardStmt"
                and body.get("target") == "DISCARD_ALL"
                and (in_txn or (implicit and index != last))
            ):
                found.append(
                    f"{where}: DISCARD ALL cannot run inside a transaction block "
                    "(cockroach pkg/sql/discard.go; a multi-statement message is "
                    "one implicit transaction)"
                )
            ro = (
                read_only
                or session_read_only
                or bool(clauses)
                or (implicit and message_aost is not None)
            )
            locking = kind == "SelectStmt" and _has(body, "lockingClause")
            if ro and (locking or kind in MUTATIONS):
                what = "a locking read" if locking else "a write"
                found.append(
                    f"{where}: cannot execute {what} "
                    "in a read-only transaction (tests/crdb_facts/errors_more.json "
                    "as_of_system_time, 25006)"
                )
            for argument in clauses:
                if in_txn and argument != txn_aost:
                    found.append(
                        f"{where}: inconsistent AS OF SYSTEM TIME timestamp in an "
                        "explicit transaction; use BEGIN / SET TRANSACTION AS OF "
                        "SYSTEM TIME (tests/crdb_facts/errors_more.json)"
                    )
                elif implicit and message_aost not in (None, argument):
                    found.append(
                        f"{where}: cannot specify AS OF SYSTEM TIME with different "
                        "timestamps in one implicit transaction "
                        "(tests/crdb_facts/grammar.md section 7)"
                    )
                message_aost = message_aost or argument
            first = False
    return found
