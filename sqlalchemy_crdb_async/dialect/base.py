"""The driver-agnostic CockroachDB dialect: server detection, versions, isolation.

Every driver module (:mod:`.asyncpg`, :mod:`.psycopg`, :mod:`.psycopg2`) mixes
:class:`CockroachDBDialect` in front of SQLAlchemy's PostgreSQL dialect for
that driver, so everything CockroachDB-specific lives here and the driver
modules stay thin.

Server detection
----------------
On the first connection of an engine the dialect runs, in one round trip::

    SELECT version(), current_setting('server_version')

and parses the answer with :func:`.server.parse_server_version`. Afterwards:

``dialect.server_flavor``
    ``"cockroachdb"`` or ``"postgresql"``.
``dialect.crdb_version``
    CockroachDB's version tuple, e.g. ``(25, 4, 1)``; ``None`` on PostgreSQL.
``dialect.server_version_info``
    The PostgreSQL version the server is (PostgreSQL) or speaks (CockroachDB's
    ``server_version``, 13.0.0 since v21.1): true to the server, never a fixed
    constant, so SQLAlchemy's own PostgreSQL feature checks stay honest.
``dialect.server_info``
    The whole :class:`.server.ServerInfo`.

Every CockroachDB-only behaviour is gated on these values, with a comment naming
the fact it relies on. On PostgreSQL the dialect behaves as SQLAlchemy's
PostgreSQL dialect does, which is how this package is tested when no
CockroachDB server is available.

Isolation levels
----------------
On CockroachDB: ``SERIALIZABLE`` (the default), ``AUTOCOMMIT``, and from v23.2
``READ COMMITTED`` (crdb-facts/session_vars.md section 2; before v24.1 it needs
the cluster setting ``sql.txn.read_committed_isolation.enabled``, otherwise the
server silently runs the transaction as SERIALIZABLE). On PostgreSQL: whatever
SQLAlchemy's dialect for the driver accepts. Any other value raises
:class:`sqlalchemy.exc.ArgumentError` listing the valid ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import schema as sa_schema
from sqlalchemy.dialects.postgresql.base import PGDialect
from typing_extensions import override

from . import reflection as crdb_reflection
from .compiler import (
    CockroachDBCompiler,
    CockroachDBDDLCompiler,
    CockroachDBIdentifierPreparer,
    CockroachDBTypeCompiler,
)
from .server import ServerFlavor, ServerInfo, parse_server_version

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection, IsolationLevel

__all__ = ["CockroachDBDialect"]

#: One round trip tells the server apart and gives both version numbers.
DETECT_SERVER_SQL = "SELECT version(), current_setting('server_version')"

# READ COMMITTED appeared in v23.2 (crdb-facts/session_vars.md section 2,
# https://cockroachlabs.com/docs/v23.2/read-committed).
_CRDB_READ_COMMITTED_SINCE = (23, 2, 0)


_CRDB_INDEX_ARGS: dict[str, Any] = {
    "storing": None,
    "hash_sharded": False,
    "bucket_count": None,
    "inverted": False,
}


class CockroachDBDialect(PGDialect):
    """CockroachDB behaviour shared by every driver; see the module docstring."""

    name = "cockroachdb"
    supports_statement_cache = True

    # typed loosely: each driver's PostgreSQL dialect declares its own classes
    statement_compiler: type[Any] = CockroachDBCompiler
    ddl_compiler = CockroachDBDDLCompiler  # type: ignore[assignment]
    type_compiler_cls: ClassVar[type[Any]] = CockroachDBTypeCompiler
    preparer: type[Any] = CockroachDBIdentifierPreparer

    #: PostgreSQL's keyword arguments under this dialect's prefix, plus
    #: CockroachDB's own index options (see :mod:`.compiler`).
    construct_arguments = [
        (
            cls,
            {**args, **_CRDB_INDEX_ARGS} if cls is sa_schema.Index else dict(args),
        )
        for cls, args in PGDialect.construct_arguments or []
    ]

    #: What the server said on the first connection; None until then.
    server_info: ServerInfo | None = None

    @property
    def server_flavor(self) -> ServerFlavor | None:
        """``"cockroachdb"`` or ``"postgresql"``; None before the first connection."""
        return self.server_info.flavor if self.server_info else None

    @property
    def crdb_version(self) -> tuple[int, int, int] | None:
        """CockroachDB's version tuple, e.g. ``(25, 4, 1)``; None on PostgreSQL."""
        return self.server_info.crdb_version if self.server_info else None

    @property
    def is_cockroachdb(self) -> bool:
        """True once the first connection has shown a CockroachDB server."""
        return self.server_info is not None and self.server_info.is_cockroachdb

    def crdb_at_least(self, *version: int) -> bool:
        """True on CockroachDB of at least ``version``; False on PostgreSQL."""
        crdb = self.crdb_version
        return crdb is not None and crdb >= version

    @classmethod
    @override
    def engine_created(cls, engine: Engine) -> None:
        # The pool (pool._pool.CockroachPool) may take part in the engine's
        # connection close, to send its session reset with the rollback.
        hook = getattr(engine.pool, "engine_created", None)
        if hook is not None:
            hook(engine)

    @override
    def _get_server_version_info(self, connection: Connection) -> tuple[int, ...]:
        version, server_version = connection.exec_driver_sql(DETECT_SERVER_SQL).one()
        self.server_info = parse_server_version(str(version), str(server_version))
        return self.server_info.pg_version

    @override
    def get_isolation_level_values(
        self, dbapi_conn: DBAPIConnection
    ) -> list[IsolationLevel]:
        if not self.is_cockroachdb:
            return list(super().get_isolation_level_values(dbapi_conn))
        levels: list[IsolationLevel] = ["SERIALIZABLE", "AUTOCOMMIT"]
        if self.crdb_at_least(*_CRDB_READ_COMMITTED_SINCE):
            levels.append("READ COMMITTED")
        return levels

    # -- reflection (see reflection.py) --------------------------------------

    @property
    def _default_schema(self) -> str:
        return self.default_schema_name or "public"

    @override
    def get_multi_columns(  # type: ignore[override]
        self,
        connection: Connection,
        *,
        schema: str | None = None,
        filter_names: Any = None,
        **kw: Any,
    ) -> Any:
        columns = super().get_multi_columns(
            connection, schema=schema, filter_names=filter_names, **kw
        )
        if not self.is_cockroachdb:
            return columns
        # CockroachDB: exact types, hidden columns, unique_rowid() (reflection.py)
        return crdb_reflection.crdb_columns(
            columns,
            connection,
            schema or self._default_schema,
            include_hidden=bool(kw.get("include_hidden", False)),
        )

    @override
    def get_multi_indexes(  # type: ignore[override]
        self,
        connection: Connection,
        *,
        schema: str | None = None,
        filter_names: Any = None,
        **kw: Any,
    ) -> Any:
        if not self.is_cockroachdb:
            return crdb_reflection.rename_pg_options(
                super().get_multi_indexes(
                    connection, schema=schema, filter_names=filter_names, **kw
                )
            )
        # CockroachDB: pg_indexes.indexdef has STORING / USING HASH, and pg_am
        # has no btree row (crdb-facts/indexes.json pg_indexes, pg_am)
        tables = self._get_table_oids(
            connection, schema, filter_names, kw.pop("scope"), kw.pop("kind"), **kw
        )
        return crdb_reflection.crdb_indexes(
            connection, schema, self._default_schema, [n for _, n in tables]
        )


def _renaming_options(name: str) -> Any:
    """A ``get_multi_*`` that returns PostgreSQL's answer, options renamed."""

    def get_multi(
        self: CockroachDBDialect,
        connection: Connection,
        *,
        schema: str | None = None,
        filter_names: Any = None,
        **kw: Any,
    ) -> Any:
        parent = getattr(super(CockroachDBDialect, self), name)
        result = parent(connection, schema=schema, filter_names=filter_names, **kw)
        return crdb_reflection.rename_pg_options(result)

    get_multi.__name__ = get_multi.__qualname__ = name
    return get_multi


# Same queries on both servers; only the option keys become cockroachdb_*.
for _name in (
    "get_multi_table_options",
    "get_multi_pk_constraint",
    "get_multi_unique_constraints",
):
    setattr(CockroachDBDialect, _name, _renaming_options(_name))
del _name
