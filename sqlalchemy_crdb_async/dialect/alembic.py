"""Alembic support: the migration implementation for the ``cockroachdb`` dialect.

Importing :mod:`sqlalchemy_crdb_async` registers :class:`CockroachDBImpl` with
Alembic when Alembic is installed (Alembic looks implementations up by dialect
name), so ``alembic revision --autogenerate`` and ``alembic upgrade`` work with
``cockroachdb+asyncpg://`` URLs in an async ``env.py`` as with PostgreSQL.

What it changes from Alembic's PostgreSQL implementation:

Transactional DDL
    On PostgreSQL, migrations run in one transaction, as Alembic does there.
    On CockroachDB, ``transactional_ddl`` is True only when the session has
    ``autocommit_before_ddl = off``: with it on (the default from v25.1) the
    server commits the open transaction before each schema change anyway, and
    before v24.1 (no such variable) CockroachDB's docs advise running schema
    changes as single statements rather than in multi-statement transactions
    (https://www.cockroachlabs.com/docs/stable/online-schema-changes). Pass
    ``transactional_ddl=`` to ``context.configure`` to decide yourself.

ALTER COLUMN ... TYPE in a transaction
    CockroachDB refuses a column type change that rewrites the column inside
    an explicit transaction: "unimplemented: ALTER COLUMN TYPE is not
    supported inside a transaction", 0A000 (cockroach
    ``pkg/sql/alter_column_type.go``, ``AlterColTypeInTxnNotSupportedErr``;
    https://github.com/cockroachdb/cockroach/issues/49351;
    https://www.cockroachlabs.com/docs/v24.3/alter-table#alter-column-data-type).
    A migration runs in one when ``transactional_ddl`` is on, i.e. with
    ``autocommit_before_ddl = off``, the v24.3 default
    (tests/crdb_facts/settings.md section 2). The migration stays atomic (this
    package does not commit it behind your back): the refusal is re-raised as
    Alembic's ``CommandError`` saying what to do: put the operation in
    ``with op.get_context().autocommit_block():``, or run the migrations with
    ``autocommit_before_ddl = on`` (``SET``, or ``ALTER ROLE ... SET``; the
    default from v25.1), where each schema change commits on its own.

Autogenerate on CockroachDB
    - ``Integer`` columns are created as ``INT4`` (see :mod:`.compiler`), but an
      autoincrementing integer primary key becomes ``SERIAL`` = ``INT8 DEFAULT
      unique_rowid()`` (tests/crdb_facts/information_schema_columns.json,
      ``serial_rowid_default``): that pair is not reported as a change, and its
      ``unique_rowid()`` default is treated like PostgreSQL's SERIAL sequence.
    - ``JSON`` is stored as ``JSONB`` (tests/crdb_facts/pg_catalog_support.md
      section 6): JSON in the model against JSONB in the database is no change.
    - Reflected ``cockroachdb_*`` index options (STORING, hash sharding,
      inverted, vector) take part in index comparison.
    - ``VECTOR(n)`` columns compare by dimension; a vector index's operator
      classes are compared on PostgreSQL (pgvector's hnsw) only.

Reflected index/constraint options are named ``cockroachdb_*`` on both servers
(this dialect's prefix); the comparison reads them under either prefix.
"""

from __future__ import annotations

from typing import Any

from alembic.ddl import postgresql as _alembic_pg
from alembic.ddl.base import ColumnComment, IdentityColumnDefault, RenameTable
from alembic.ddl.postgresql import PostgresqlColumnType, PostgresqlImpl
from alembic.util import CommandError
from sqlalchemy import exc
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.compiler import compiles
from typing_extensions import override

from ..sqlstate import sqlstates_of

__all__ = ["CockroachDBImpl"]


def _option(item: Any, name: str) -> Any:
    # dialect_kwargs answers a declared option's default (False/None) when
    # unset, so an unset cockroachdb_* falls through to postgresql_*.
    kwargs = item.dialect_kwargs
    return kwargs.get(f"cockroachdb_{name}") or kwargs.get(f"postgresql_{name}")


class CockroachDBImpl(PostgresqlImpl):
    """Alembic's PostgreSQL implementation, adjusted for CockroachDB."""

    __dialect__ = "cockroachdb"

    def __init__(
        self,
        dialect: Any,
        connection: Any,
        as_sql: bool,
        transactional_ddl: bool | None,
        output_buffer: Any,
        context_opts: dict[str, Any],
    ) -> None:
        super().__init__(
            dialect, connection, as_sql, transactional_ddl, output_buffer, context_opts
        )
        if transactional_ddl is None and self._is_crdb:
            # offline (--sql) runs have no session to ask
            self.transactional_ddl = not as_sql and _crdb_allows_transactional_ddl(
                connection
            )

    @property
    def _is_crdb(self) -> bool:
        return bool(getattr(self.dialect, "is_cockroachdb", False))

    @override
    def alter_column(self, table_name: str, column_name: str, **kw: Any) -> None:
        if not self._is_crdb or kw.get("type_") is None:
            return super().alter_column(table_name, column_name, **kw)
        try:
            return super().alter_column(table_name, column_name, **kw)
        except exc.DBAPIError as err:
            if not _alter_type_refused_in_transaction(err):
                raise
            raise CommandError(
                f"CockroachDB refused to change the type of {table_name}."
                f"{column_name} inside the migration's transaction ('ALTER "
                "COLUMN TYPE is not supported inside a transaction', 0A000; "
                "https://github.com/cockroachdb/cockroach/issues/49351). Put the "
                "operation in 'with op.get_context().autocommit_block():' (it "
                "then commits on its own, outside the migration's transaction), "
                "or run the migrations with autocommit_before_ddl = on (SET "
                "autocommit_before_ddl = on in env.py, or ALTER ROLE ... SET "
                "autocommit_before_ddl = on; the default from v25.1), where each "
                "schema change commits on its own."
            ) from err

    @override
    def compare_type(self, inspector_column: Any, metadata_column: Any) -> bool:
        declared, found = metadata_column.type, inspector_column.type
        if getattr(declared, "__crdb_vector__", False) and getattr(
            found, "__crdb_vector__", False
        ):
            # VECTOR(n): the dimension is the type (VECTOR and VECTOR(3) differ)
            return bool(declared.dim != found.dim)
        if self._is_crdb:
            meta = metadata_column.type
            found = inspector_column.type
            if isinstance(meta, sqltypes.JSON) and isinstance(found, sqltypes.JSON):
                return False  # JSON is JSONB: tests/crdb_facts/pg_catalog_support.md
            if (
                _is_serial(metadata_column)
                and isinstance(meta, sqltypes.Integer)
                and isinstance(found, sqltypes.BigInteger)
            ):
                return False  # SERIAL is INT8 unique_rowid() (serial_rowid_default)
        return bool(super().compare_type(inspector_column, metadata_column))

    @override
    def compare_server_default(
        self,
        inspector_column: Any,
        metadata_column: Any,
        rendered_metadata_default: Any,
        rendered_inspector_default: Any,
    ) -> bool:
        if (
            self._is_crdb
            and metadata_column.server_default is None
            and (rendered_inspector_default or "").startswith("unique_rowid()")
            and _is_serial(metadata_column)
        ):
            return False
        return bool(
            super().compare_server_default(
                inspector_column,
                metadata_column,
                rendered_metadata_default,
                rendered_inspector_default,
            )
        )

    @override
    def _dialect_options(self, item: Any) -> tuple[Any, ...]:
        options: list[Any] = []
        if _option(item, "nulls_not_distinct"):
            options.append("nulls_not_distinct")
        storing = _option(item, "storing") or _option(item, "include")
        if storing:
            options.append(("storing", tuple(storing)))
        if _option(item, "hash_sharded") or _option(item, "bucket_count"):
            options.append("hash_sharded")
        if _option(item, "inverted") or (_option(item, "using") or "") == "gin":
            options.append("inverted")
        if _option(item, "vector") or (_option(item, "using") or "") in (
            "cspann",
            "hnsw",
        ):
            options.append("vector")
            if not self._is_crdb:
                # pgvector prints each column's operator class; CockroachDB's
                # pg_indexes may print vector_l2_ops for every vector index
                # (catformat/index.go TODO(#144016), tests/crdb_facts/vectors.md
                # section 3.1), so there only the kind is compared;
                # vector_l2_ops is pgvector's default, so a model
                # that names none matches an index that prints it
                ops = dict(_option(item, "ops") or {})
                named = sorted((k, v) for k, v in ops.items() if v != _DEFAULT_OPS)
                options.append(("ops", tuple(named)))
        where = _option(item, "where")
        if where is not None and self._is_crdb:
            options.append("partial")
        return tuple(options)

    @override
    def adjust_reflected_dialect_options(
        self, reflected_object: Any, kind: str
    ) -> dict[str, Any]:
        options: dict[str, Any] = dict(reflected_object.get("dialect_options", {}))
        for prefix in ("postgresql", "cockroachdb"):
            if not options.get(f"{prefix}_include"):
                options.pop(f"{prefix}_include", None)
        return options


#: pgvector's default operator class (and CockroachDB's).
_DEFAULT_OPS = "vector_l2_ops"


def _crdb_allows_transactional_ddl(connection: Any) -> bool:
    """True only when the session has ``autocommit_before_ddl`` off.

    With it on (the default from v25.1,
    https://github.com/cockroachdb/cockroach/pull/139871)
    CockroachDB commits the open transaction before every schema change, so a
    migration cannot be rolled back as a whole; before v24.1 the variable does
    not exist and the docs advise against multi-statement DDL transactions.
    Offline (``--sql``) runs cannot ask, and say False.
    """
    if connection is None:
        return False
    value = connection.exec_driver_sql(
        "SELECT current_setting('autocommit_before_ddl', true)"
    ).scalar()
    return str(value).lower() in ("off", "false")


def _alter_type_refused_in_transaction(err: BaseException) -> bool:
    """CockroachDB's refusal of ALTER COLUMN TYPE inside a transaction.

    0A000 is every "unimplemented" refusal, so the message tells this one
    apart: CockroachDB gives it no other marker (cockroach
    pkg/sql/alter_column_type.go, AlterColTypeInTxnNotSupportedErr).
    """
    return "0A000" in sqlstates_of(err) and "ALTER COLUMN TYPE is not supported" in (
        str(getattr(err, "orig", err))
    )


def _is_serial(column: Any) -> bool:
    table: Any = getattr(column, "table", None)
    return bool(
        column.primary_key
        and column is getattr(table, "_autoincrement_column", None)
        and getattr(column, "server_default", None) is None
        and getattr(column, "identity", None) is None
    )


# Alembic's PostgreSQL DDL spellings apply to this dialect too (both servers
# accept them: ALTER TABLE ... RENAME TO, ALTER COLUMN ... TYPE ... USING,
# COMMENT ON COLUMN, identity ALTER COLUMN forms).
for _construct, _visit in (
    (RenameTable, _alembic_pg.visit_rename_table),
    (PostgresqlColumnType, _alembic_pg.visit_column_type),
    (ColumnComment, _alembic_pg.visit_column_comment),
    (IdentityColumnDefault, _alembic_pg.visit_identity_column),
):
    compiles(_construct, "cockroachdb")(_visit)
