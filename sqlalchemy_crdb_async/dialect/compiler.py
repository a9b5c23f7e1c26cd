"""Statement, DDL and type compilers and the identifier preparer.

Each class extends SQLAlchemy's PostgreSQL one and changes only what
CockroachDB needs; on PostgreSQL the output is the PostgreSQL dialect's.

DDL options
-----------
Every ``postgresql_*`` keyword of SQLAlchemy's PostgreSQL dialect is also
accepted as ``cockroachdb_*`` (reflection returns ``cockroachdb_*`` keys, since
this dialect is named ``cockroachdb``). CockroachDB-only index options:

``cockroachdb_storing=["c", ...]``
    a covering index, ``STORING (c)``
    (https://www.cockroachlabs.com/docs/stable/create-index); on PostgreSQL the
    same meaning is spelled ``INCLUDE (c)``, which is emitted there.
``cockroachdb_hash_sharded=True`` / ``cockroachdb_bucket_count=N``
    ``USING HASH [STORING (...)] [WITH (bucket_count=N)]`` (CockroachDB's
    clause order); CockroachDB only (a ``CompileError`` on PostgreSQL).
``cockroachdb_inverted=True``
    ``CREATE INVERTED INDEX`` on CockroachDB, ``USING gin`` on PostgreSQL; with
    ``cockroachdb_ops={"name": "gin_trgm_ops"}`` a trigram index.
``cockroachdb_vector=True``
    ``CREATE VECTOR INDEX`` (CockroachDB v25.2+, behind the cluster setting
    ``feature.vector_index.enabled`` until v25.4:
    https://www.cockroachlabs.com/docs/v25.2/vector-indexes), with prefix
    columns, ``cockroachdb_ops`` per vector column and ``cockroachdb_with``
    storage parameters; pgvector's ``USING hnsw`` on PostgreSQL (see
    :mod:`._vector_index`). Inverted and vector indexes cannot be
    unique, hash-sharded or ``STORING`` (a ``CompileError``).
``cockroachdb_ops={"col": "opclass"}``
    an operator class; on CockroachDB only on the last column of an inverted
    or vector index (a ``CompileError`` elsewhere, which the server refuses).
``cockroachdb_visibility=0.0`` / ``0.5``
    ``NOT VISIBLE`` (v22.2+) / ``VISIBILITY 0.5`` (v23.2+): the share of queries
    the optimizer may plan with the index; 1.0 (the default) writes nothing.
    A ``CompileError`` below those versions and, for values below 1, on
    PostgreSQL (which has no invisible indexes).
``cockroachdb_where=<expr>``
    a partial index (as ``postgresql_where``).

Types on CockroachDB
--------------------
``Integer`` is written ``INT4``, because CockroachDB's ``INTEGER`` means ``INT8``
(``default_int_size`` 8, https://www.cockroachlabs.com/docs/v25.2/set-vars);
``JSON`` is written ``JSONB`` (CockroachDB stores JSON as JSONB,
tests/crdb_facts/pg_catalog_support.md section 6). An autoincrementing integer
primary key is still ``SERIAL``, which CockroachDB turns into
``INT8 DEFAULT unique_rowid()``
(tests/crdb_facts/information_schema_columns.json ``serial_rowid_default``).

Computed columns are written ``AS (expr) STORED`` / ``AS (expr) VIRTUAL`` on
CockroachDB (both kinds exist there; an unspecified one is STORED, as SQLAlchemy
writes it for servers below PostgreSQL 18).

Identifier quoting covers both servers' keywords that cannot be a bare name:
PostgreSQL's reserved and type/function-name keywords (``lateral``,
``tablesample``, ... which SQLAlchemy's list lacks) and every keyword CockroachDB's
own formatter quotes (``index``, ``family``, ``string``, ``nothing``, ...).
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import exc, schema
from sqlalchemy.dialects.postgresql.base import (
    RESERVED_WORDS,
    PGCompiler,
    PGDDLCompiler,
    PGIdentifierPreparer,
    PGTypeCompiler,
)
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql import expression as sql_expr
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import CompoundSelect
from typing_extensions import override

from . import _vector_index
from . import constructs as crdb_sql
from ._keywords import CRDB_RESERVED_WORDS, PG_RESERVED_WORDS
from .functions import render_timestampdiff

__all__ = [
    "CRDB_RESERVED_WORDS",
    "PG_RESERVED_WORDS",
    "CockroachDBCompiler",
    "CockroachDBDDLCompiler",
    "CockroachDBIdentifierPreparer",
    "CockroachDBTypeCompiler",
]


class CockroachDBIdentifierPreparer(PGIdentifierPreparer):
    reserved_words = RESERVED_WORDS | PG_RESERVED_WORDS | CRDB_RESERVED_WORDS


#: Indexes already created inside their table's CREATE TABLE on CockroachDB.
_INLINED_INDEXES: weakref.WeakSet[Any] = weakref.WeakSet()


def _is_crdb(dialect: Any) -> bool:
    return bool(getattr(dialect, "is_cockroachdb", False))


class CockroachDBTypeCompiler(PGTypeCompiler):
    @override
    def visit_INTEGER(self, type_: Any, **kw: Any) -> str:
        # CockroachDB: INTEGER is INT8 (default_int_size,
        # https://www.cockroachlabs.com/docs/v25.2/set-vars)
        return "INT4" if _is_crdb(self.dialect) else "INTEGER"

    @override
    def visit_user_defined(self, type_: Any, **kw: Any) -> str:
        if _is_crdb(self.dialect) and getattr(type_, "__crdb_vector__", False):
            dialect: Any = self.dialect
            if not dialect.crdb_at_least(*_VECTOR_TYPE_SINCE):
                raise exc.CompileError(
                    f"{type_.get_col_spec()} needs CockroachDB v24.2 or later; "
                    f"this server is {dialect.server_info.describe()}"
                )
        return str(super().visit_user_defined(type_, **kw))

    @override
    def visit_JSON(self, type_: Any, **kw: Any) -> str:
        # CockroachDB stores JSON as JSONB (tests/crdb_facts/pg_catalog_support.md)
        return "JSONB" if _is_crdb(self.dialect) else "JSON"


def _mirror_options(element: Any) -> None:
    """Copy ``cockroachdb_*`` options PostgreSQL also knows into ``postgresql_*``.

    SQLAlchemy's PostgreSQL DDL compiler reads ``dialect_options["postgresql"]``;
    mirroring lets it honour the same options given with this dialect's prefix.
    An explicitly set ``postgresql_*`` value wins.
    """
    options = getattr(element, "dialect_options", None)
    if options is None:
        return
    ours = options["cockroachdb"]._non_defaults
    if not ours:
        return
    pg = options["postgresql"]
    for key, value in ours.items():
        if key in pg and key not in pg._non_defaults:
            pg[key] = value


def _ddl_targets(statement: Any) -> list[Any]:
    element = getattr(statement, "element", None)
    if element is None:
        return []
    targets = [element]
    if isinstance(element, schema.Table):
        targets.extend(element.constraints)
        targets.extend(element.indexes)
    return targets


# Index visibility: NOT VISIBLE from v22.2, VISIBILITY <fraction> from v23.2
# (https://www.cockroachlabs.com/docs/v22.2/create-index,
# https://www.cockroachlabs.com/docs/v23.2/create-index); printed last, after
# WHERE (cockroach pkg/sql/catalog/catformat/index.go, sql.y opt_index_visible).
_NOT_VISIBLE_SINCE = (22, 2)
_VISIBILITY_SINCE = (23, 2)
# CREATE VECTOR INDEX: https://www.cockroachlabs.com/docs/v25.2/vector-indexes
# The VECTOR type: v24.2 (https://github.com/cockroachdb/cockroach/pull/124292)
_VECTOR_TYPE_SINCE = (24, 2)
_VECTOR_INDEX_SINCE = (25, 2)


def _visibility(index: Any, ours: Any) -> float | None:
    """The index's visibility below 1.0, or None when it is fully visible."""
    value = ours["visibility"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise exc.CompileError(
            f"index {index.name!r}: cockroachdb_visibility is a number from 0.0 "
            f"(NOT VISIBLE) to 1.0 (visible), got {value!r}"
        )
    if not 0.0 <= value <= 1.0:
        raise exc.CompileError(
            f"index {index.name!r}: cockroachdb_visibility must be within "
            f"[0.0, 1.0], got {value!r}"
        )
    return None if value == 1.0 else float(value)


def _refuse_on_postgresql(index: Any, ours: Any) -> None:
    if _visibility(index, ours) is not None:
        raise exc.CompileError(
            f"index {index.name!r}: cockroachdb_visibility below 1.0 is "
            "CockroachDB-only; PostgreSQL has no invisible indexes."
        )


def _visibility_clause(dialect: Any, index: Any, ours: Any) -> str:
    value = _visibility(index, ours)
    if value is None:
        return ""
    if value == 0.0:
        needed, clause = _NOT_VISIBLE_SINCE, " NOT VISIBLE"
    else:
        needed, clause = _VISIBILITY_SINCE, f" VISIBILITY {value!r}"
    if not dialect.crdb_at_least(*needed):
        raise exc.CompileError(
            f"index {index.name!r}:{clause} needs CockroachDB "
            f"v{needed[0]}.{needed[1]} or later; this server is "
            f"{dialect.server_info.describe()}"
        )
    return clause


def _index_kind(index: Any, *, inverted: bool, vector: bool) -> str | None:
    """``"inverted"``, ``"vector"`` or None (a forward index)."""
    if inverted and vector:
        raise exc.CompileError(
            f"index {index.name!r}: cockroachdb_inverted and cockroachdb_vector "
            "exclude each other (an index has one type); keep one."
        )
    return "inverted" if inverted else "vector" if vector else None


def _check_opclass(index: Any, opclass: str, kind: str | None, *, last: bool) -> None:
    # An operator class only on the last column of an inverted (trigram:
    # gin_trgm_ops) or vector (vector_l2_ops) index: cockroach
    # pkg/sql/create_index.go "operator classes are only allowed for the last
    # column of an inverted index" (42804); catformat/index.go prints the
    # vector ones (tests/crdb_facts/grammar.md section 5).
    if kind is None or not last:
        raise exc.CompileError(
            f"index {index.name!r}: operator class {opclass!r} on CockroachDB "
            "goes only on the last column of an inverted or vector index; drop "
            "it from cockroachdb_ops or make the index inverted."
        )


class CockroachDBDDLCompiler(PGDDLCompiler):
    def __init__(self, dialect: Any, statement: Any, **kw: Any) -> None:
        for target in _ddl_targets(statement):
            _mirror_options(target)
        super().__init__(dialect, statement, **kw)

    @override
    def visit_computed_column(self, generated: Any, **kw: Any) -> str:
        if not _is_crdb(self.dialect):
            return str(super().visit_computed_column(generated, **kw))
        # CockroachDB: `AS (expr) STORED` / `AS (expr) VIRTUAL`
        # (https://www.cockroachlabs.com/docs/stable/computed-columns);
        # unspecified persistence stays STORED, as SQLAlchemy writes it for
        # servers reporting a version below 18.
        sqltext = self.sql_compiler.process(
            generated.sqltext, include_table=False, literal_binds=True
        )
        kind = "VIRTUAL" if generated.persisted is False else "STORED"
        return f"AS ({sqltext}) {kind}"

    @override
    def visit_create_index(
        self,
        create: Any,
        include_schema: bool = False,
        include_table_schema: bool = True,
        **kw: Any,
    ) -> str:
        index = create.element
        ours = index.dialect_options["cockroachdb"]
        pg = index.dialect_options["postgresql"]
        sharded = ours["hash_sharded"] or ours["bucket_count"] is not None
        if sharded and not _is_crdb(self.dialect):
            raise exc.CompileError(
                f"index {index.name!r}: cockroachdb_hash_sharded is "
                "CockroachDB-only (USING HASH); PostgreSQL has no hash-sharded "
                "indexes. Drop the option for PostgreSQL."
            )
        if not _is_crdb(self.dialect):
            _refuse_on_postgresql(index, ours)
            if ours["vector"]:  # pgvector's hnsw (_vector_index.py)
                return _vector_index.pg_vector_index(self, create, index, pg)
            # the same meaning in PostgreSQL's spelling
            if ours["storing"] and not pg["include"]:
                pg["include"] = ours["storing"]
            if ours["inverted"] and not pg["using"]:
                pg["using"] = "gin"
            return str(super().visit_create_index(create, **kw))
        return self._crdb_create_index(create, index, ours, pg)

    def _crdb_create_index(self, create: Any, index: Any, ours: Any, pg: Any) -> str:
        self._verify_index_table(index)
        inline = index in _INLINED_INDEXES
        prefix, body = self._crdb_index_parts(index, ours, pg)
        text = f"CREATE {prefix}INDEX "
        if create.if_not_exists or inline:
            # created inside CREATE TABLE already: a no-op, not a schema change
            text += "IF NOT EXISTS "
        name = self._prepared_index_name(index, include_schema=False)
        return f"{text}{name} ON {self.preparer.format_table(index.table)} {body}"

    def _crdb_index_parts(self, index: Any, ours: Any, pg: Any) -> tuple[str, str]:
        """The index's ``(prefix, body)``.

        ``prefix``: ``"UNIQUE "``, ``"INVERTED "`` or ``""``; ``body``:
        ``(cols) [USING HASH] [STORING (...)] [WITH (...)] [WHERE ...]``, in
        CockroachDB's clause order (see below).
        """
        preparer = self.preparer
        using = (pg["using"] or "").lower()
        inverted = bool(ours["inverted"]) or using in ("gin", "inverted")
        # USING hnsw: an alias of cspann since v25.2.0-rc.1 (release note of
        # https://github.com/cockroachdb/cockroach/pull/144533)
        vector = bool(ours["vector"]) or using in ("cspann", "hnsw")
        kind = _index_kind(index, inverted=inverted, vector=vector)
        sharded = ours["hash_sharded"] or ours["bucket_count"] is not None
        storing = ours["storing"] or pg["include"]
        if kind and (index.unique or sharded or storing):
            # cockroach pkg/sql/sem/idxtype/idxtype.go: CanBeUnique,
            # SupportsSharding and SupportsStoring hold for forward indexes
            # only; pkg/sql/create_index.go: "inverted indexes can't be unique"
            # / "don't support hash sharding" / "don't support stored columns"
            # (42602); CREATE TABLE's index_def has no such clauses
            raise exc.CompileError(
                f"index {index.name!r}: a CockroachDB {kind} index cannot be "
                f"unique, hash-sharded or STORING; drop those options or the "
                f"{kind} one."
            )
        prefix = "UNIQUE " if index.unique else ""
        if inverted:
            # https://www.cockroachlabs.com/docs/stable/inverted-indexes
            prefix += "INVERTED "
        elif vector:
            dialect: Any = self.dialect
            if not dialect.crdb_at_least(*_VECTOR_INDEX_SINCE):
                raise exc.CompileError(
                    f"index {index.name!r}: CREATE VECTOR INDEX needs CockroachDB "
                    f"v25.2 or later; this server is {dialect.server_info.describe()}"
                )
            prefix += "VECTOR "
        ops = pg["ops"] or {}
        if vector:
            _vector_index.check_crdb_vector_index(self.dialect, index, ops)
        elements = []
        last = len(index.expressions) - 1
        for position, expr in enumerate(index.expressions):
            element = self.sql_compiler.process(
                expr.self_group()
                if not isinstance(expr, sql_expr.ColumnClause)
                else expr,
                include_table=False,
                literal_binds=True,
            )
            opclass = ops.get(getattr(expr, "name", None) or getattr(expr, "key", None))
            if opclass:  # gin_trgm_ops, vector_l2_ops (catformat/index.go)
                _check_opclass(index, opclass, kind, last=position == last)
                element += f" {opclass}"
            elements.append(element)
        body = "({})".format(", ".join(elements))
        # CockroachDB's clause order (v22.1+; cockroach pkg/sql/parser/sql.y
        # index_def / create_index, tests/crdb_facts/grammar.md sections 1-3):
        # (cols) USING HASH, STORING (...), PARTITION, WITH (...), WHERE, and
        # the visibility last.
        if sharded:
            # bucket_count in [2, 2048]:
            # https://www.cockroachlabs.com/docs/stable/hash-sharded-indexes
            body += " USING HASH"
        if storing:
            body += " STORING ({})".format(
                ", ".join(
                    preparer.quote(c if isinstance(c, str) else c.name) for c in storing
                )
            )
        if ours["bucket_count"] is not None:
            # a storage parameter since v22.1 (tests/crdb_facts/grammar.md s.3)
            body += f" WITH (bucket_count={int(ours['bucket_count'])})"
        if vector:  # min/max_partition_size, build_beam_size
            body += _vector_index.crdb_vector_with(index, ours["with"])
        where = pg["where"]
        if where is not None:
            where = coercions.expect(roles.DDLExpressionRole, where)
            body += " WHERE " + self.sql_compiler.process(
                where, include_table=False, literal_binds=True
            )
        body += _visibility_clause(self.dialect, index, ours)
        return prefix, body

    @override
    def post_create_table(self, table: Any) -> str:
        if _is_crdb(self.dialect) and table.dialect_options["postgresql"]["using"]:
            # CockroachDB's CREATE TABLE has no USING <access method> (sql.y
            # create_table_stmt; pg_am lists only its own "prefix"/"inverted")
            raise exc.CompileError(
                f"table {table.name!r}: CockroachDB tables have no access method "
                f"(cockroachdb_using={table.dialect_options['postgresql']['using']!r}"
                "); drop the option."
            )
        return str(super().post_create_table(table))

    @override
    def create_table_constraints(
        self, table: Any, _include_foreign_key_constraints: Any = None, **kw: Any
    ) -> str:
        text = str(
            super().create_table_constraints(
                table, _include_foreign_key_constraints, **kw
            )
        )
        if not _is_crdb(self.dialect):
            return text
        # CockroachDB: indexes inside CREATE TABLE avoid one schema change per
        # index (the issue this package was started for); the CREATE INDEX that
        # create_all still sends becomes IF NOT EXISTS, a no-op.
        inline = []
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            if index.name is None:
                continue
            ours = index.dialect_options["cockroachdb"]
            pg = index.dialect_options["postgresql"]
            prefix, body = self._crdb_index_parts(index, ours, pg)
            name = self._prepared_index_name(index, include_schema=False)
            inline.append(f"{prefix}INDEX {name} {body}")
            _INLINED_INDEXES.add(index)
        return ", \n\t".join(p for p in [text, *inline] if p)


class CockroachDBCompiler(PGCompiler):
    """PostgreSQL's statement compiler plus the constructs in :mod:`.sql`."""

    #: The AS OF SYSTEM TIME clause the statement carries, if any.
    crdb_as_of_system_time: str | None = None

    @override
    def _compose_select_body(
        self,
        text: str,
        select: Any,
        compile_state: Any,
        inner_columns: Any,
        froms: Any,
        byfrom: Any,
        toplevel: Any,
        kwargs: Any,
    ) -> str:
        aost, _ = crdb_sql.split_aost_hints(select._statement_hints, self.dialect.name)
        if aost:
            if not _is_crdb(self.dialect):
                raise exc.CompileError(
                    f"{aost[-1]!r} is CockroachDB-only and this server is "
                    "PostgreSQL; drop as_of_system_time() there."
                )
            if not toplevel:
                raise crdb_sql.not_top_level(aost[-1], self._crdb_place(kwargs))
            if not froms:
                raise exc.CompileError("AS OF SYSTEM TIME needs a FROM clause")
            if select._for_update_arg is not None:
                raise exc.CompileError(
                    "AS OF SYSTEM TIME cannot be combined with FOR UPDATE/SHARE "
                    "(https://www.cockroachlabs.com/docs/stable/as-of-system-time)"
                )
            # the clause ends the FROM list:
            # https://www.cockroachlabs.com/docs/stable/as-of-system-time
            froms = [*froms[:-1], crdb_sql.AsOfFrom(froms[-1], aost[-1])]
            # checked at execution: only in an implicit transaction (base.py)
            self.crdb_as_of_system_time = aost[-1]
        return str(
            super()._compose_select_body(
                text,
                select,
                compile_state,
                inner_columns,
                froms,
                byfrom,
                toplevel,
                kwargs,
            )
        )

    def visit_timestampdiff_func(self, func: Any, **kw: Any) -> str:
        """``func.timestampdiff(unit, start, end)``: SQLAlchemy's compiler
        calls ``visit_<name>_func`` for a plain function of that name; the
        exact arithmetic of :func:`.functions.timestampdiff`, for this
        dialect only."""
        return render_timestampdiff(self, list(func.clauses), unit_in_key=False, **kw)

    def _crdb_place(self, kwargs: Any) -> str:
        """Where the select being compiled sits, in words, for an error."""
        if kwargs.get("visiting_cte") is not None:
            return "a CTE (WITH ...)"
        # self.stack[-1] is this select; the entry below it is what encloses it
        parent = self.stack[-2]["selectable"] if len(self.stack) > 1 else None
        if isinstance(parent, Insert):
            return "an INSERT ... SELECT"
        if isinstance(parent, CompoundSelect):
            return f"an arm of a {parent.keyword.value}"
        return "a subquery"

    @override
    def get_statement_hint_text(self, hint_texts: Any) -> str:
        rest = [h for h in hint_texts if not h.startswith(crdb_sql.AS_OF_SYSTEM_TIME)]
        return " ".join(rest)

    @override
    def format_from_hint_text(
        self, sqltext: str, table: Any, hint: str, iscrud: bool
    ) -> str:
        if hint.startswith("@"):
            return crdb_sql.render_index_hint(self, sqltext, table, hint)
        # The older sqlalchemy-cockroachdb's form, with_hint(t, "ix_name"): the
        # hint text follows "@" verbatim (CockroachDB's table@index, also
        # table@{FORCE_INDEX=...}: https://www.cockroachlabs.com/docs/stable/
        # table-expressions#force-index-selection).
        return crdb_sql.render_bare_index_hint(self, sqltext, table, hint)
