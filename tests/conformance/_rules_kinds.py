"""Checker rules on the parse tree: statement kinds, clauses, types, system columns.

Each rule names what CockroachDB does not have and where that is written:

``BNF``
    cockroach ``docs/generated/sql/bnf/stmt_block.bnf`` (generated from
    ``pkg/sql/parser/sql.y``; the index's copy has CREATE TRIGGER and the
    VECTOR type, so INFERRED >= v24.3). A statement, clause or option absent
    from it is refused by the parser: a syntax error, or an ``error``
    production that answers "unimplemented" (0A000).
``SQLY``
    cockroach ``pkg/sql/parser/sql.y`` (releases before v26.3) ``error`` /
    ``unimplemented``
    productions: ``opt_create_table_inherits: INHERITS error``,
    ``opt_create_table_on_commit: ON COMMIT DELETE ROWS error | ON COMMIT DROP
    error``, ``create_unsupported`` (CREATE ACCESS METHOD, AGGREGATE, CAST,
    CONSTRAINT TRIGGER, CONVERSION, FOREIGN TABLE, FOREIGN DATA, LANGUAGE,
    OPERATOR, PUBLICATION, RULE, SERVER, SUBSCRIPTION, TABLESPACE, TEXT
    SEARCH), ``drop_unsupported`` (the same plus DOMAIN, COLLATION),
    ``alter_unsupported_stmt`` (ALTER DOMAIN, ALTER AGGREGATE),
    ``DISCARD PLANS { unimplemented }``.
``TYPES``
    cockroach ``pkg/sql/types/types.go`` ``postgresPredefinedTypeIssues``:
    PostgreSQL types CockroachDB does not define (box, cidr, circle, line,
    lseg, macaddr, macaddr8, money, path, pg_lsn, point, polygon,
    txid_snapshot, xml; tsvector/tsquery were there until v23.1 added full
    text search, tests/crdb_facts/builtins.json ``to_tsvector`` documented from
    v23.1). Range and multirange types: ``pkg/sql/types`` has no range family
    and the BNF's ``create_type_stmt`` has only ENUM and composite types.
    ``jsonpath``: INFERRED from v25.2 (``jsonb_path_query`` is documented from
    v25.2 in tests/crdb_facts/builtins.json).
``SYSCOLS``
    cockroach ``pkg/sql/catalog/colinfo/system_columns.go``: the system columns
    are ``crdb_internal_mvcc_timestamp``, ``tableoid``,
    ``crdb_internal_origin_id``, ``crdb_internal_origin_timestamp``;
    PostgreSQL's ``ctid``, ``xmin``, ``xmax``, ``cmin``, ``cmax`` do not exist.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["kind_problems", "text_problems"]

BNF = "cockroach docs/generated/sql/bnf/stmt_block.bnf"
SQLY = "cockroach pkg/sql/parser/sql.y"
TYPES = "cockroach pkg/sql/types/types.go postgresPredefinedTypeIssues"

#: Statement nodes CockroachDB's grammar has no production for, or answers
#: "unimplemented" for.
STATEMENTS: dict[str, str] = {
    "AlterDomainStmt": f"ALTER DOMAIN ({SQLY} alter_unsupported_stmt; INFERRED "
    "still at v26.3: cockroach PR #165187 adds CREATE and DROP DOMAIN only)",
    "CreateTableSpaceStmt": f"CREATE TABLESPACE ({SQLY} create_unsupported)",
    "DropTableSpaceStmt": f"DROP TABLESPACE ({BNF}: no such statement)",
    "AlterTableSpaceOptionsStmt": f"ALTER TABLESPACE ({BNF}: no such statement)",
    "AlterTableMoveAllStmt": f"ALTER TABLE ALL IN TABLESPACE ({BNF})",
    "MergeStmt": f"MERGE ({BNF}: no merge statement, MERGE is only a join hint; "
    "https://github.com/cockroachdb/cockroach/issues/51373 open)",
    "NotifyStmt": "NOTIFY (LISTEN/NOTIFY unimplemented, cockroach issue #41522; "
    f"{BNF} has only UNLISTEN)",
    "ListenStmt": "LISTEN (cockroach issue #41522)",
    "LockStmt": f"LOCK TABLE ({BNF}: no such statement)",
    "ClusterStmt": f"CLUSTER ({BNF}: no such statement)",
    "CheckPointStmt": f"CHECKPOINT ({BNF}: no such statement)",
    "ReindexStmt": f"REINDEX ({SQLY}: reindex error productions)",
    "LoadStmt": f"LOAD ({BNF}: no such statement)",
    "ConstraintsSetStmt": f"SET CONSTRAINTS ({BNF}: no such statement)",
    "AlterSystemStmt": f"ALTER SYSTEM ({BNF}: no such statement)",
    "CreateRangeStmt": f"CREATE TYPE ... AS RANGE ({BNF} create_type_stmt)",
    "CreateAmStmt": f"CREATE ACCESS METHOD ({SQLY} create_unsupported)",
    "CreateCastStmt": f"CREATE CAST ({SQLY} create_unsupported)",
    "CreateConversionStmt": f"CREATE CONVERSION ({SQLY} create_unsupported)",
    "CreateForeignTableStmt": f"CREATE FOREIGN TABLE ({SQLY} create_unsupported)",
    "CreateFdwStmt": f"CREATE FOREIGN DATA WRAPPER ({SQLY} create_unsupported)",
    "CreateForeignServerStmt": f"CREATE SERVER ({SQLY} create_unsupported)",
    "CreatePLangStmt": f"CREATE LANGUAGE ({SQLY} create_unsupported)",
    "CreatePublicationStmt": f"CREATE PUBLICATION ({SQLY} create_unsupported)",
    "CreateSubscriptionStmt": f"CREATE SUBSCRIPTION ({SQLY} create_unsupported)",
    "RuleStmt": f"CREATE RULE ({SQLY} create_unsupported)",
    "CreateOpClassStmt": f"CREATE OPERATOR CLASS ({SQLY} create_unsupported)",
    "CreateEventTrigStmt": f"CREATE EVENT TRIGGER ({BNF}: no such statement)",
    "CreateTransformStmt": f"CREATE TRANSFORM ({BNF}: no such statement)",
    "AlterTSDictionaryStmt": f"ALTER TEXT SEARCH ({BNF}: no such statement)",
}

#: ``DefineStmt`` kinds (CREATE AGGREGATE / OPERATOR / TEXT SEARCH / base TYPE).
DEFINE_KINDS = {
    "OBJECT_AGGREGATE": "CREATE AGGREGATE",
    "OBJECT_OPERATOR": "CREATE OPERATOR",
    "OBJECT_TSPARSER": "CREATE TEXT SEARCH PARSER",
    "OBJECT_TSDICTIONARY": "CREATE TEXT SEARCH DICTIONARY",
    "OBJECT_TSTEMPLATE": "CREATE TEXT SEARCH TEMPLATE",
    "OBJECT_TSCONFIGURATION": "CREATE TEXT SEARCH CONFIGURATION",
    "OBJECT_TYPE": "CREATE TYPE (base type)",
    "OBJECT_COLLATION": "CREATE COLLATION",
}

#: ``DROP`` kinds: ``drop_unsupported`` in sql.y, or absent from the BNF.
DROP_KINDS = {
    "OBJECT_TABLESPACE": "DROP TABLESPACE",
    "OBJECT_AGGREGATE": "DROP AGGREGATE",
    "OBJECT_CAST": "DROP CAST",
    "OBJECT_COLLATION": "DROP COLLATION",
    "OBJECT_CONVERSION": "DROP CONVERSION",
    "OBJECT_FOREIGN_TABLE": "DROP FOREIGN TABLE",
    "OBJECT_LANGUAGE": "DROP LANGUAGE",
    "OBJECT_OPERATOR": "DROP OPERATOR",
    "OBJECT_PUBLICATION": "DROP PUBLICATION",
    "OBJECT_RULE": "DROP RULE",
    "OBJECT_FOREIGN_SERVER": "DROP SERVER",
    "OBJECT_SUBSCRIPTION": "DROP SUBSCRIPTION",
    "OBJECT_TSCONFIGURATION": "DROP TEXT SEARCH",
    "OBJECT_TSDICTIONARY": "DROP TEXT SEARCH",
}

#: ``ALTER TABLE`` subcommands in the BNF's ``alter_table_cmd`` (plus OWNER,
#: the row-level-security switches of v25.2+ which this list does not gate
#: by version). Anything else is refused.
ALTER_TABLE_ALLOWED = frozenset(
    {
        "AT_AddColumn",
        "AT_ColumnDefault",
        "AT_CookedColumnDefault",
        "AT_DropNotNull",
        "AT_SetNotNull",
        "AT_DropColumn",
        "AT_AddConstraint",
        "AT_ValidateConstraint",
        "AT_DropConstraint",
        "AT_AlterColumnType",
        "AT_SetRelOptions",
        "AT_ResetRelOptions",
        "AT_ChangeOwner",
        "AT_AddIdentity",
        "AT_SetIdentity",
        "AT_DropIdentity",
        "AT_EnableRowSecurity",
        "AT_DisableRowSecurity",
        "AT_ForceRowSecurity",
        "AT_NoForceRowSecurity",
    }
)

#: PostgreSQL types CockroachDB lacks (at every release of the window) -> why.
MISSING_TYPES: dict[str, str] = {
    **dict.fromkeys(
        (
            "box",
            "cidr",
            "circle",
            "line",
            "lseg",
            "macaddr",
            "macaddr8",
            "money",
            "path",
            "pg_lsn",
            "point",
            "polygon",
            "txid_snapshot",
            "pg_snapshot",
            "xml",
        ),
        TYPES,
    ),
    **{
        name: f"no range types (cockroach pkg/sql/types; {BNF} create_type_stmt)"
        for base in ("int4", "int8", "num", "ts", "tstz", "date")
        for name in (f"{base}range", f"{base}multirange")
    },
}
JSONPATH_SINCE = (25, 2)

#: CREATE / DROP DOMAIN: https://github.com/cockroachdb/cockroach/pull/165187
#: ("sql: add DOMAIN type support", opened 2026-03-08, after release-26.2
#: had branched: INFERRED), documented from v26.3
#: (https://www.cockroachlabs.com/docs/v26.3/create-domain; the v24.3, v25.2
#: and v26.1 sql-feature-support pages have no DOMAIN row). Before:
#: ``CREATE DOMAIN error`` in sql.y, cockroach issue #27796.
DOMAIN_SINCE = (26, 3)

MISSING_SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax"})

#: ``COMMENT ON`` targets in the BNF's ``comment_stmt``.
COMMENT_OBJECTS = frozenset(
    {
        "OBJECT_DATABASE",
        "OBJECT_SCHEMA",
        "OBJECT_TYPE",
        "OBJECT_TABLE",
        "OBJECT_COLUMN",
        "OBJECT_INDEX",
        "OBJECT_TABCONSTRAINT",
    }
)

#: Index access methods CockroachDB knows (``USING name``); cspann and its
#: alias hnsw are vector indexes (v25.2+; not gated here: the compiler's
#: ``_VECTOR_INDEX_SINCE`` gates vector DDL).
INDEX_METHODS = frozenset({"btree", "gin", "gist", "cspann", "hnsw"})

#: Constraint timing clauses: none in the BNF's constraints (column or
#: table), where PostgreSQL's parser folds the NOT DEFERRABLE / INITIALLY
#: IMMEDIATE defaults away, so they are found in the text.
_TIMING = re.compile(r"\b(NOT\s+DEFERRABLE|INITIALLY\s+(IMMEDIATE|DEFERRED))\b", re.I)
_TABLE_DDL = re.compile(r"^\s*(CREATE|ALTER)\s+(\w+\s+)*TABLE\b", re.I)
_RECURSIVE_VIEW = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?((TEMP|TEMPORARY)\s+)?RECURSIVE\s+VIEW\b", re.I
)


def text_problems(masked: str) -> list[str]:
    """Refusals PostgreSQL's parse tree does not keep (``masked`` text)."""
    found = []
    if _TABLE_DDL.match(masked) and (m := _TIMING.search(masked)):
        found.append(
            f"{m[0].upper()} constraint timing ({BNF}: constraints have no "
            "DEFERRABLE / INITIALLY clauses): CockroachDB refuses it"
        )
    if _RECURSIVE_VIEW.match(masked):
        found.append(f"CREATE RECURSIVE VIEW ({BNF} create_view_stmt): refused")
    return found


def _nodes(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, list):
        for item in node:
            yield from _nodes(item)
    elif isinstance(node, dict):
        for key, body in node.items():
            if isinstance(body, dict):
                yield key, body
            yield from _nodes(body)


def _constraint(body: dict[str, Any]) -> list[str]:
    found = []
    contype = body.get("contype")
    if contype == "CONSTR_EXCLUSION":
        found.append(
            f"exclusion constraint (EXCLUDE): {BNF} constraint_elem has none; "
            f"{SQLY} answers unimplemented (cockroach issue #46657)"
        )
    if contype in ("CONSTR_ATTR_DEFERRABLE", "CONSTR_ATTR_DEFERRED") or body.get(
        "deferrable"
    ):
        found.append(f"DEFERRABLE constraint ({BNF}: no DEFERRABLE in constraints)")
    if body.get("fk_matchtype") == "p":
        found.append(f"MATCH PARTIAL ({BNF} key_match: SIMPLE or FULL)")
    if body.get("nulls_not_distinct"):
        found.append(f"UNIQUE NULLS NOT DISTINCT ({BNF} constraint_elem)")
    if body.get("indexspace"):
        found.append(f"USING INDEX TABLESPACE ({BNF}: no tablespaces)")
    return found


Body = dict[str, Any]
#: (parse-tree node, does the rule apply to its body, what is wrong)
Rule = tuple[str, "Callable[[Body], bool]", "Callable[[Body], str]"]


def _says(text: str) -> Callable[[Body], str]:
    return lambda body: text


def _on_commit(body: Body) -> str:
    action = body["oncommit"].removeprefix("ONCOMMIT_").replace("_", " ")
    return (
        f"ON COMMIT {action}: {SQLY} opt_create_table_on_commit has only PRESERVE ROWS"
    )


#: (node, field) -> what is refused when the node has that field set
FIELD_RULES: dict[tuple[str, str], str] = {
    (
        "CreateStmt",
        "inhRelations",
    ): f"table inheritance (INHERITS): {SQLY} INHERITS error",
    ("CreateStmt", "tablespacename"): f"TABLESPACE clause ({BNF} create_table_stmt)",
    (
        "CreateStmt",
        "accessMethod",
    ): f"table access method USING ({BNF} create_table_stmt)",
    ("CreateStmt", "partbound"): f"PARTITION OF ({BNF} create_table_stmt)",
    ("CreateStmt", "ofTypename"): f"CREATE TABLE ... OF type ({BNF} create_table_stmt)",
    ("CreateStmt", "partspec"): "PostgreSQL declarative partitioning: CockroachDB's "
    f"PARTITION BY LIST|RANGE (columns) lists its partitions inline ({BNF} "
    "partition_by_inner; no HASH)",
    ("CreateSchemaStmt", "schemaElts"): "CREATE SCHEMA with schema elements "
    f"({BNF} create_schema_stmt)",
    ("IndexStmt", "tableSpace"): f"index TABLESPACE ({BNF} create_index_stmt)",
    ("IndexStmt", "nulls_not_distinct"): f"NULLS NOT DISTINCT index ({BNF})",
    (
        "VacuumStmt",
        "is_vacuumcmd",
    ): f"VACUUM ({BNF}: no such statement; ANALYZE exists)",
    ("CreateTrigStmt", "isconstraint"): f"CREATE CONSTRAINT TRIGGER ({SQLY})",
    ("TruncateStmt", "restart_seqs"): f"TRUNCATE ... RESTART IDENTITY ({BNF})",
    (
        "CopyStmt",
        "filename",
    ): f"COPY to/from a server file ({BNF}: STDIN / STDOUT only)",
    ("CopyStmt", "is_program"): f"COPY ... PROGRAM ({BNF}: STDIN / STDOUT only)",
    ("ViewStmt", "options"): f"CREATE VIEW ... WITH (options) ({BNF} create_view_stmt)",
}

#: Rules that read more than one field (node, applies, message).
CLAUSE_RULES: list[Rule] = [
    (
        "CreateStmt",
        lambda b: b.get("oncommit") in ("ONCOMMIT_DELETE_ROWS", "ONCOMMIT_DROP"),
        _on_commit,
    ),
    (
        "CreateTableAsStmt",
        lambda b: bool((b.get("into") or {}).get("skipData")),
        _says(
            f"WITH NO DATA ({BNF}: create_table_as_stmt has none, "
            "create_view_stmt's opt_with_data is WITH DATA only)"
        ),
    ),
    (
        "CommentStmt",
        lambda b: b.get("objtype") not in COMMENT_OBJECTS,
        lambda b: (
            f"COMMENT ON {str(b.get('objtype')).removeprefix('OBJECT_')} ({BNF} "
            "comment_stmt: DATABASE, SCHEMA, TYPE, TABLE, COLUMN, INDEX, CONSTRAINT)"
        ),
    ),
    (
        "IndexStmt",
        lambda b: b.get("accessMethod", "btree") not in INDEX_METHODS,
        lambda b: (
            f"index access method {b['accessMethod']}: CockroachDB answers "
            "'unrecognized access method' (42601); it has btree, gin, gist and, "
            "for vector indexes, cspann / hnsw "
            "(https://www.cockroachlabs.com/docs/v26.2/create-index, "
            "https://github.com/cockroachdb/cockroach/pull/144533)"
        ),
    ),
    (
        "RangeTableSample",
        lambda b: True,
        _says(f"TABLESAMPLE ({BNF} table_ref has no sampling clause)"),
    ),
    (
        "DiscardStmt",
        lambda b: b.get("target") == "DISCARD_PLANS",
        _says(f"DISCARD PLANS ({SQLY}: unimplemented(sqllex, 'discard plans'))"),
    ),
    (
        "DefineStmt",
        lambda b: b.get("kind") in DEFINE_KINDS,
        lambda b: f"{DEFINE_KINDS[b['kind']]} ({SQLY} create_unsupported)",
    ),
    (
        "DropStmt",
        lambda b: b.get("removeType") in DROP_KINDS,
        lambda b: f"{DROP_KINDS[b['removeType']]} ({SQLY} drop_unsupported)",
    ),
    (
        "ViewStmt",
        lambda b: b.get("withCheckOption", "NO_CHECK_OPTION") != "NO_CHECK_OPTION",
        _says(f"WITH CHECK OPTION ({BNF} create_view_stmt)"),
    ),
    (
        "AlterTableCmd",
        lambda b: b.get("subtype") not in ALTER_TABLE_ALLOWED,
        lambda b: (
            f"ALTER TABLE {str(b.get('subtype', '?')).removeprefix('AT_')} "
            f"({BNF} alter_table_cmd has no such command)"
        ),
    ),
]


def _statement(kind: str, body: Body) -> list[str]:
    found = [
        message
        for (node, key), message in FIELD_RULES.items()
        if node == kind and body.get(key)
    ]
    found.extend(
        message(body)
        for node, applies, message in CLAUSE_RULES
        if node == kind and applies(body)
    )
    if kind == "Constraint":
        found.extend(_constraint(body))
    elif kind in STATEMENTS:
        found.append(STATEMENTS[kind])
    return found


def _type(body: dict[str, Any], version: tuple[int, int]) -> list[str]:
    names = [
        n["String"]["sval"].lower() for n in body.get("names", []) if "String" in n
    ]
    if not names or (len(names) > 1 and names[0] != "pg_catalog"):
        return []
    name = names[-1]
    if name in MISSING_TYPES:
        return [f"type {name}: CockroachDB has no such type ({MISSING_TYPES[name]})"]
    if name == "jsonpath" and version < JSONPATH_SINCE:
        return [
            f"type jsonpath before v{JSONPATH_SINCE[0]}.{JSONPATH_SINCE[1]} (INFERRED "
            "from tests/crdb_facts/builtins.json: jsonb_path_query documented "
            "from v25.2)"
        ]
    return []


def _domain(kind: str, body: dict[str, Any], version: tuple[int, int]) -> list[str]:
    dropped = kind == "DropStmt" and body.get("removeType") == "OBJECT_DOMAIN"
    if (kind == "CreateDomainStmt" or dropped) and version < DOMAIN_SINCE:
        verb = "DROP" if dropped else "CREATE"
        return [
            f"{verb} DOMAIN before v{DOMAIN_SINCE[0]}.{DOMAIN_SINCE[1]} ({SQLY}: "
            "CREATE DOMAIN error, cockroach issue #27796; domains arrived with "
            "https://github.com/cockroachdb/cockroach/pull/165187): CockroachDB "
            "refuses it"
        ]
    return []


def kind_problems(tree: Any, version: tuple[int, int]) -> list[str]:
    """What one parsed statement uses that CockroachDB ``version`` lacks."""
    found: list[str] = []
    for kind, body in _nodes(tree):
        found.extend(_domain(kind, body, version))
        if kind in ("TypeName", "typeName"):
            found.extend(_type(body, version))
        elif kind == "ColumnRef":
            fields = [f["String"]["sval"] for f in body["fields"] if "String" in f]
            if fields and fields[-1] in MISSING_SYSTEM_COLUMNS:
                found.append(
                    f"system column {fields[-1]}: CockroachDB has none "
                    "(cockroach pkg/sql/catalog/colinfo/system_columns.go: "
                    "crdb_internal_mvcc_timestamp, tableoid, "
                    "crdb_internal_origin_id, crdb_internal_origin_timestamp)"
                )
        else:
            found.extend(f"{p}: CockroachDB refuses it" for p in _statement(kind, body))
    return found
