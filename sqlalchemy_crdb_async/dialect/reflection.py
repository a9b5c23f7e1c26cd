"""Schema reflection that is correct on CockroachDB and on PostgreSQL.

:class:`.base.CockroachDBDialect` calls into this module from its
``get_multi_*`` overrides:

On PostgreSQL
    SQLAlchemy's PostgreSQL reflection runs unchanged; only the keys of
    reflected dialect options are renamed from ``postgresql_*`` to
    ``cockroachdb_*`` (this dialect's name), so a reflected ``Index`` or
    ``Table`` can be re-created by this dialect: :func:`rename_pg_options`.

On CockroachDB (gated on ``dialect.is_cockroachdb``)
    Columns: SQLAlchemy's PostgreSQL column query (pg_catalog; it works on
    CockroachDB, tests/crdb_facts/pg_catalog_support.md sections 1-3) plus *one*
    ``information_schema.columns`` query for the schema, whose
    ``crdb_sql_type``/``is_hidden``/``column_default`` columns are merged in by
    :func:`merge_crdb_column`: exact types (:func:`.types.type_from_crdb`),
    hidden columns (``rowid``, hash-shard columns, ``crdb_region``) dropped
    unless ``include_hidden=True`` (then marked
    ``dialect_options["cockroachdb_hidden"]``; every column also carries the
    older package's ``is_hidden`` key), ``unique_rowid()`` defaults marked
    autoincrement, and older servers' type annotations (``9:::INT8``) removed.

    Indexes: one ``pg_indexes`` query for the schema, each ``indexdef`` parsed
    by :func:`.indexdef.parse_crdb_indexdef` (STORING, USING HASH, partial, inverted,
    trigram, vector and expression indexes, visibility; the hidden shard column
    never shows up as a key). A definition the parser does not understand is
    skipped with a warning naming it; the other indexes are still reflected.

    Unique indexes: CockroachDB lists each one in ``pg_constraint`` too, so a
    unique constraint with a same-named index is marked ``duplicates_index``
    (:func:`mark_index_duplicates`); SQLAlchemy then reflects an index and
    Alembic compares it with a model's ``Index`` or ``UniqueConstraint`` alike.

    Vector columns: ``crdb_sql_type`` ``VECTOR(3)`` gives ``VECTOR(3)`` (the
    dimension is there; ``format_type`` drops it on CockroachDB); vector indexes
    (``USING cspann (..., e vector_l2_ops)``) give ``cockroachdb_vector`` and
    ``cockroachdb_ops``; their storage parameters are not in ``pg_indexes``, so
    they are not reflected (tests/crdb_facts/vectors.md section 3.1).

    Table options: no ``cockroachdb_using`` (:func:`drop_table_access_method`).

    SQLAlchemy's own catalogue queries go through :func:`crdb_catalog_query`,
    which replaces the functions CockroachDB lacks (``pg_collation_is_visible``)
    with equivalent SQL and, below v26.3, the schema-less ``regclass::text``
    in the identity-column lookup with the schema-qualified table name.
    ``tests/conformance/`` checks every query against CockroachDB's builtins
    and catalogue.

Every ``get_multi_*`` method issues one query per kind for all the tables asked
for (plus SQLAlchemy's shared table-oid query), never one per table; results
are cached by SQLAlchemy's ``info_cache`` as for any dialect.

Both parsers are pure functions, tested against every row in
tests/crdb_facts/information_schema_columns.json and tests/crdb_facts/indexes.json
(tests/dialect/test_types_golden.py, tests/dialect/test_indexdef_golden.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    TEXT,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    util,
)
from sqlalchemy.dialects.postgresql import REGCLASS, pg_catalog
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import Cast
from sqlalchemy.sql.functions import Function

from .indexdef import parse_crdb_indexdef, strip_type_annotations
from .types import type_from_crdb

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CRDB_INDEX_OPTIONS",
    "column_from_information_schema",
    "crdb_catalog_query",
    "drop_table_access_method",
    "mark_index_duplicates",
    "mark_pg_vector_indexes",
    "merge_crdb_column",
    "rename_pg_options",
    "strip_type_annotations",
]

#: Index options this dialect reflects and accepts as ``cockroachdb_<name>``.
CRDB_INDEX_OPTIONS = (
    "storing",
    "hash_sharded",
    "bucket_count",
    "inverted",
    "vector",
    "visibility",
)

# -- catalogue queries ---------------------------------------------------------

#: PostgreSQL catalogue functions CockroachDB does not define, and the
#: CockroachDB-safe expression each call is replaced with.
#: pg_collation_is_visible: absent from every CockroachDB version (cockroach
#: pkg/sql/sem/builtins/pg_builtins.go defines pg_function_is_visible,
#: pg_table_is_visible and pg_type_is_visible only;
#: tests/crdb_facts/builtins.json "notable"). SQLAlchemy 2.1's column and
#: domain queries call it.


def _collation_is_visible(collation_oid: Any) -> Any:
    # What pg_table_is_visible does on CockroachDB (its SQL body,
    # tests/crdb_facts/builtins.json notable.pg_table_is_visible): the
    # object's schema is on the search path.
    coll = pg_catalog.pg_collation.alias("crdb_vis_coll")
    nsp = pg_catalog.pg_namespace.alias("crdb_vis_nsp")
    return (
        select(nsp.c.nspname == any_(func.current_schemas(True)))
        .select_from(coll.join(nsp, nsp.c.oid == coll.c.collnamespace))
        .where(coll.c.oid == collation_oid)
        .limit(1)
        .scalar_subquery()
    )


_CRDB_MISSING_FUNCTIONS = {"pg_collation_is_visible": _collation_is_visible}


def _qualified_table_name(relation_oid: Any) -> Any:
    # The schema-qualified, quoted name of the relation ``relation_oid``: what
    # PostgreSQL's CAST(CAST(oid AS REGCLASS) AS TEXT) gives for a table
    # outside the search path, spelled so that it is qualified always.
    cls = pg_catalog.pg_class.alias("crdb_seq_cls")
    nsp = pg_catalog.pg_namespace.alias("crdb_seq_nsp")
    return (
        select(
            func.quote_ident(nsp.c.nspname, type_=TEXT)
            + literal_column("'.'", TEXT)
            + func.quote_ident(cls.c.relname, type_=TEXT)
        )
        .select_from(cls.join(nsp, nsp.c.oid == cls.c.relnamespace))
        .where(cls.c.oid == relation_oid)
        # relation_oid's table belongs to an enclosing select
        .correlate_except(cls, nsp)
        .scalar_subquery()
    )


def _regclass_text_of(element: Any) -> Any:
    """The oid in ``CAST(CAST(oid AS REGCLASS) AS TEXT)``, else None."""
    if not isinstance(element, Cast) or not isinstance(element.type, TEXT):
        return None
    inner = element.clause
    if isinstance(inner, Cast) and isinstance(inner.type, REGCLASS):
        return inner.clause
    return None


def crdb_catalog_query(query: Any, *, regclass_text_qualified: bool = False) -> Any:
    """``query`` with what CockroachDB lacks or gets wrong replaced by equivalents.

    SQLAlchemy builds its PostgreSQL reflection queries with functions that
    CockroachDB does not define (:data:`_CRDB_MISSING_FUNCTIONS`); this walks
    the statement, subqueries included, and swaps each such call.

    Unless ``regclass_text_qualified`` (CockroachDB v26.3+), it also rewrites
    the table argument of ``pg_get_serial_sequence(CAST(CAST(attrelid AS
    REGCLASS) AS TEXT), attname)``, SQLAlchemy's identity-column lookup (2.0
    and 2.1 alike): CockroachDB before v26.3 renders ``regclass::text``
    without the schema even for a table outside the search path
    (https://github.com/cockroachdb/cockroach/issues/170049, fixed by
    https://github.com/cockroachdb/cockroach/pull/170189 in v26.3 only), so
    reflecting an ``Identity()`` column of ``other.t`` failed, or read the
    sequence of a same-named ``public.t``. The argument becomes
    ``quote_ident(nspname) || '.' || quote_ident(relname)`` of that oid,
    qualified always; on PostgreSQL both give the same rows
    (tests/conformance/test_postgresql_equivalence.py).
    """

    def replace(element: Any, **kw: Any) -> Any:
        if not isinstance(element, Function):
            return None
        if element.name in _CRDB_MISSING_FUNCTIONS:
            (argument,) = element.clauses.clauses
            return _CRDB_MISSING_FUNCTIONS[element.name](argument)
        if element.name == "pg_get_serial_sequence" and not regclass_text_qualified:
            table, column = element.clauses.clauses
            oid = _regclass_text_of(table)
            if oid is not None:
                return Function(
                    element.name,
                    _qualified_table_name(oid),
                    column,
                    type_=element.type,
                    packagenames=element.packagenames,
                )
        return None

    return visitors.replacement_traverse(query, {}, replace)


# -- columns -----------------------------------------------------------------


def _yes(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).upper() in ("YES", "TRUE", "ALWAYS", "T")


def merge_crdb_column(
    column: dict[str, Any], row: Mapping[str, Any], *, include_hidden: bool
) -> dict[str, Any] | None:
    """Fold one ``information_schema.columns`` row into a reflected column.

    Returns None when the column is hidden and ``include_hidden`` is false.
    """
    hidden = _yes(row.get("is_hidden", "NO"))
    if hidden and not include_hidden:
        return None
    merged = dict(column)
    merged.setdefault("name", row["column_name"])
    crdb_type = row.get("crdb_sql_type")
    parsed = type_from_crdb(crdb_type) if crdb_type else None
    if parsed is not None:
        merged["type"] = parsed
    elif "type" not in merged:
        raise ValueError(
            f"column {row['column_name']!r}: unknown CockroachDB type "
            f"{crdb_type!r} and no PostgreSQL-reflected type to fall back on"
        )
    if "is_nullable" in row:
        merged["nullable"] = _yes(row["is_nullable"])
    generated = str(row.get("is_generated") or "").upper()
    if generated in ("YES", "ALWAYS"):
        computed = dict(merged.get("computed") or {})
        computed["sqltext"] = strip_type_annotations(row.get("generation_expression"))
        computed.setdefault("persisted", True)
        merged["computed"] = computed
        merged["default"] = None
    elif "column_default" in row and not merged.get("identity"):
        # an identity column's nextval(...) is its identity, not a default
        merged["default"] = strip_type_annotations(row["column_default"])
    merged.setdefault("default", None)
    if _yes(row.get("is_identity", "NO")):
        identity = dict(merged.get("identity") or {})
        identity.setdefault(
            "always", str(row.get("identity_generation", "")).upper() == "ALWAYS"
        )
        merged["identity"] = identity
        merged["default"] = None
    # unique_rowid() is CockroachDB's SERIAL
    # (tests/crdb_facts/information_schema_columns.json serial_rowid_default)
    default = merged.get("default") or ""
    merged["autoincrement"] = bool(
        merged.get("identity")
        or default.startswith("unique_rowid()")
        or default.startswith("nextval(")
        or column.get("autoincrement")
    )
    merged.setdefault("comment", None)
    if hidden:
        merged.setdefault("dialect_options", {})["cockroachdb_hidden"] = True
    # the older sqlalchemy-cockroachdb's key, kept so its users' code still runs
    merged["is_hidden"] = hidden
    return merged


def column_from_information_schema(
    row: Mapping[str, Any], *, include_hidden: bool = False
) -> dict[str, Any] | None:
    """A reflected column built from an ``information_schema.columns`` row alone."""
    return merge_crdb_column({}, row, include_hidden=include_hidden)


_COLUMNS_SQL = """
SELECT table_name, column_name, crdb_sql_type, is_hidden, is_nullable,
       column_default, is_generated, generation_expression, is_identity,
       identity_generation
FROM information_schema.columns
WHERE table_schema = :schema
"""


def crdb_column_rows(
    connection: Any, schema: str, table_names: Iterable[str]
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """One query: the CockroachDB extras for every column of ``table_names``."""
    names = list(table_names)
    if not names:
        return {}
    query = text(_COLUMNS_SQL + " AND table_name IN :names").bindparams(
        bindparam("names", expanding=True)
    )
    result = connection.execute(query, {"schema": schema, "names": names})
    return {(r["table_name"], r["column_name"]): r for r in result.mappings()}


def crdb_columns(
    pg_columns: Iterable[tuple[tuple[str | None, str], list[dict[str, Any]]]],
    connection: Any,
    schema: str,
    *,
    include_hidden: bool,
) -> list[tuple[tuple[str | None, str], list[dict[str, Any]]]]:
    """PostgreSQL-reflected columns corrected with CockroachDB's own answers."""
    tables = list(pg_columns)
    rows = crdb_column_rows(connection, schema, [key[1] for key, _ in tables])
    out = []
    for key, columns in tables:
        kept = []
        for column in columns:
            row = rows.get((key[1], column["name"]))
            if row is None:
                kept.append(column)
                continue
            merged = merge_crdb_column(column, row, include_hidden=include_hidden)
            if merged is not None:
                kept.append(merged)
        out.append((key, kept))
    return out


# -- indexes -----------------------------------------------------------------

_INDEXES_SQL = """
SELECT i.tablename, i.indexname, i.indexdef,
       (SELECT CAST(c.contype AS TEXT) FROM pg_catalog.pg_constraint AS c
          JOIN pg_catalog.pg_class AS t ON t.oid = c.conrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
         WHERE n.nspname = i.schemaname AND t.relname = i.tablename
           AND c.conname = i.indexname AND c.contype IN ('p', 'u')
         LIMIT 1) AS contype
FROM pg_catalog.pg_indexes AS i
WHERE i.schemaname = :schema AND i.tablename IN :names
ORDER BY i.tablename, i.indexname
"""


def crdb_indexes(
    connection: Any,
    schema: str | None,
    default_schema: str,
    table_names: Iterable[str],
) -> list[tuple[tuple[str | None, str], list[dict[str, Any]]]]:
    """One ``pg_indexes`` query for all ``table_names``; primary keys left out."""
    names = list(table_names)
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    if names:
        query = text(_INDEXES_SQL).bindparams(bindparam("names", expanding=True))
        result = connection.execute(
            query, {"schema": schema or default_schema, "names": names}
        )
        for row in result.mappings():
            if row["contype"] == "p":
                continue  # the primary index is the primary key constraint
            try:
                index = parse_crdb_indexdef(row["indexdef"])
            except ValueError as err:
                # one index this parser does not know must not cost the schema
                util.warn(
                    f"Skipped reflection of index {row['indexname']!r} of table "
                    f"{row['tablename']!r}: {err}"
                )
                continue
            # a unique index is reported as an index; its pg_constraint 'u'
            # row as a constraint duplicating it (mark_index_duplicates)
            found[row["tablename"]].append(index)
    return [((schema, name), found[name]) for name in names]


# -- unique indexes and table options ---------------------------------------------

_INDEX_NAMES_SQL = """
SELECT i.tablename, i.indexname
FROM pg_catalog.pg_indexes AS i
WHERE i.schemaname = :schema AND i.tablename IN :names
"""


def mark_index_duplicates(uniques: Any, connection: Any, schema: str) -> Any:
    """Mark each unique constraint that is really a unique index.

    CockroachDB lists every unique index in ``pg_constraint`` with contype
    ``'u'`` (tests/crdb_facts/indexes.json ``pg_constraint`` rows; pg_catalog
    logic test), so a ``UNIQUE`` constraint and a ``CREATE UNIQUE INDEX`` look the
    same there. Each unique constraint with a same-named index of its table
    gets ``duplicates_index``, the marker SQLAlchemy and Alembic use for
    MySQL's and Oracle's identical situation: Table reflection keeps the
    index, and Alembic's autogenerate compares it with whichever of the two
    the model declares. ``UNIQUE WITHOUT INDEX`` constraints have no index
    and stay constraints.
    """
    items = [(key, list(value)) for key, value in uniques]
    names = sorted({key[1] for key, value in items if value})
    if not names:
        return items
    query = text(_INDEX_NAMES_SQL).bindparams(bindparam("names", expanding=True))
    result = connection.execute(query, {"schema": schema, "names": names})
    indexes = {(r["tablename"], r["indexname"]) for r in result.mappings()}
    for key, constraints in items:
        for constraint in constraints:
            if (key[1], constraint["name"]) in indexes:
                constraint["duplicates_index"] = constraint["name"]
    return items


def drop_table_access_method(options: Any) -> Any:
    """Table options without ``cockroachdb_using``: CockroachDB has no
    table access methods, so there is nothing to re-create."""
    return [
        (key, {k: v for k, v in value.items() if k != "cockroachdb_using"})
        for key, value in options
    ]


# -- option names ------------------------------------------------------------


def mark_pg_vector_indexes(items: Any) -> Any:
    """On PostgreSQL: pgvector's ``USING hnsw`` indexes as the vector indexes
    this dialect writes for ``cockroachdb_vector=True`` (see _vector_index.py),
    so a model round-trips and Alembic sees no change."""
    for _key, indexes in items:
        for index in indexes:
            options = index.get("dialect_options") or {}
            if options.get("cockroachdb_using") == "hnsw":
                del options["cockroachdb_using"]
                options["cockroachdb_vector"] = True
    return items


def rename_pg_options(items: Any) -> Any:
    """Rename ``postgresql_*`` keys to ``cockroachdb_*`` in reflected results.

    Works on the ``get_multi_*`` shapes: an iterable of ``(key, value)`` where
    value is a dict (table options, a constraint) or a list of dicts.
    """
    out = []
    for key, value in items:
        out.append((key, _rename(value)))
    return out


def _rename(value: Any) -> Any:
    if isinstance(value, list):
        return [_rename(v) for v in value]
    if not isinstance(value, dict):
        return value
    renamed = {}
    for k, v in value.items():
        if isinstance(k, str) and k.startswith("postgresql_"):
            k = "cockroachdb_" + k[len("postgresql_") :]
        renamed[k] = _rename(v) if k == "dialect_options" else v
    return renamed
