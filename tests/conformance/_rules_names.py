"""Checker rules on names: functions, catalogue relations and their columns.

- Every function called must exist in CockroachDB's builtins at the release
  checked (:func:`tests.conformance._releases.builtins`).
- Every ``pg_catalog`` / ``information_schema`` relation read must exist in
  that release's catalogue, and every column read from one must be one of its
  columns (:func:`tests.conformance._releases.catalog`).
- An unqualified column with several relations in scope: when it names a
  column of two or more catalogue relations in scope (CockroachDB's
  catalogue has columns PostgreSQL's lacks, e.g. ``pg_indexes.crdb_oid``,
  ``pg_class.relistemp``), CockroachDB refuses it as ambiguous (42702); when
  every relation in scope is a catalogue relation with known columns and
  none has it, it does not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.conformance._releases import CATALOG_SCHEMAS, RELEASES, builtins, catalog

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["name_problems", "names"]

Scope = dict[str, "tuple[str, str] | None"]
Catalog = dict[tuple[str, str], "frozenset[str] | None"]


def names(node_list: list[dict[str, Any]]) -> list[str]:
    return [n["String"]["sval"] for n in node_list if "String" in n]


def _walk(node: Any, scopes: list[Scope]) -> Iterator[tuple[str, Any, list[Scope]]]:
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


def _from_scope(from_clause: Any) -> Scope:
    """Alias -> (schema, relation) for catalogue relations; None for others."""
    scope: Scope = {}

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
                join = item["JoinExpr"]
                visit(join.get("larg"))
                visit(join.get("rarg"))
                # USING / NATURAL merge the joined columns: not ambiguous
                for column in names(join.get("usingClause", [])):
                    scope["=" + column] = None
                if join.get("isNatural"):
                    scope["=*"] = None
            else:
                for key in ("RangeSubselect", "RangeFunction"):
                    if key in item:
                        alias = (item[key].get("alias") or {}).get("aliasname")
                        scope[alias or f"?{len(scope)}"] = None

    visit(from_clause)
    return scope


def _catalog_relation(rv: dict[str, Any]) -> tuple[str, str] | None:
    schema = rv.get("schemaname")
    name = rv["relname"]
    if schema in CATALOG_SCHEMAS:
        return (schema, name)
    if schema is None and name.startswith("pg_"):
        return ("pg_catalog", name)  # pg_catalog is always on the search path
    return None


def name_problems(tree: Any, release: str) -> list[str]:
    rel_catalog = catalog(release)
    present, verdicts = builtins(release)
    found: list[str] = []
    for kind, node, scopes in _walk(tree, []):
        if kind == "FuncCall":
            parts = [p.lower() for p in names(node["funcname"])]
            name = parts[-1]
            if len(parts) > 1 and parts[0] not in (*CATALOG_SCHEMAS, "crdb_internal"):
                continue  # a user-defined function in a user schema
            if parts[0] == "crdb_internal":
                name = ".".join(parts[-2:])
            if name not in present:
                why = verdicts.get(name, "not a CockroachDB builtin")
                found.append(
                    f"function {'.'.join(parts)}() at CockroachDB {release}: {why} "
                    "(tests/crdb_facts/builtins.json)"
                )
        elif kind == "RangeVar":
            rel = _catalog_relation(node)
            if rel is not None and rel not in rel_catalog:
                found.append(
                    f"relation {rel[0]}.{rel[1]} does not exist in CockroachDB "
                    f"{release} (tests/crdb_facts/catalog_tables.json)"
                )
        else:
            found.extend(
                _check_column(names(node["fields"]), scopes, rel_catalog, release)
            )
    return found


def _missing(rel: tuple[str, str], column: str, release: str) -> str:
    source = (
        "tests/crdb_facts/catalog_v26.md"
        if RELEASES[release].version >= (26, 3)
        else "tests/crdb_facts/catalog_tables.json"
    )
    return (
        f"column {rel[0]}.{rel[1]}.{column} does not exist in CockroachDB "
        f"{release} ({source})"
    )


def _check_column(
    fields: list[str], scopes: list[Scope], rel_catalog: Catalog, release: str
) -> list[str]:
    if not fields:
        return []  # SELECT *
    column = fields[-1]
    if len(fields) >= 2:
        qualifier = fields[-2]
        for scope in reversed(scopes):
            if qualifier in scope:
                rel = scope[qualifier]
                columns = rel_catalog.get(rel) if rel is not None else None
                if rel is None or columns is None or column in columns:
                    return []
                return [_missing(rel, column, release)]
        return []
    inner = scopes[-1] if scopes else {}
    if "=" + column in inner or "=*" in inner:
        return []  # an output name, a USING column, or a NATURAL join
    relations = [v for k, v in inner.items() if not k.startswith("=")]
    known = [
        (rel, rel_catalog[rel])
        for rel in relations
        if rel is not None and rel_catalog.get(rel) is not None
    ]
    having = [rel for rel, columns in known if columns and column in columns]
    if len(having) >= 2:
        return [
            f"column reference {column!r} is ambiguous in CockroachDB {release}: "
            + ", ".join(f"{s}.{t}" for s, t in having)
            + " all have it (tests/crdb_facts/catalog_tables.json; 42702)"
        ]
    if having or not known or len(known) != len(relations):
        return []
    for outer in scopes[:-1]:  # a correlated reference to an outer relation?
        for key, rel in outer.items():
            columns = rel_catalog.get(rel) if rel is not None else None
            if not key.startswith("=") and (columns is None or column in columns):
                return []
    if len(relations) == 1:
        return [_missing(known[0][0], column, release)]
    return [
        f"column {column!r} is in none of "
        + ", ".join(f"{s}.{t}" for (s, t), _ in known)
        + f" in CockroachDB {release}"
    ]
