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

The same step enforces the support window (:func:`.server.check_support_window`):
CockroachDB older than v22.1 is refused with ``UnsupportedServerError``, v22.1 up
to v24.3 connects with an ``UnsupportedServerWarning``.

Every CockroachDB-only behaviour is gated on these values, with a comment naming
the fact it relies on. On PostgreSQL the dialect behaves as SQLAlchemy's
PostgreSQL dialect does, which is how this package is tested when no
CockroachDB server is available.

Isolation levels
----------------
On CockroachDB: ``SERIALIZABLE`` (the default), ``AUTOCOMMIT``, from v23.2
``READ COMMITTED`` (https://www.cockroachlabs.com/docs/v23.2/read-committed;
before v24.1 it needs the cluster setting
``sql.txn.read_committed_isolation.enabled``), and from v24.3 ``REPEATABLE READ``
(a preview that needs ``SET CLUSTER SETTING
sql.txn.repeatable_read_isolation.enabled = true``). Without its cluster
setting the server silently runs such a transaction at a stronger level; the
first connection of an engine given one of these levels checks the level the
server really runs and warns (``IsolationLevelUpgradeWarning``, naming the
setting) when it is stronger (:mod:`._isolation`). On
PostgreSQL: whatever SQLAlchemy's dialect for the driver accepts. Any other
value raises :class:`sqlalchemy.exc.ArgumentError` listing the valid ones, on
the engine's first connection too: the check needs to know the server, so
when SQLAlchemy applies an engine-wide ``isolation_level`` before its own
server detection has run (it does, on the first connection), the dialect asks
the server itself first.

``disable_cockroachdb_telemetry``
---------------------------------
The older ``sqlalchemy-cockroachdb`` documented this keyword; it is accepted
wherever that package accepted it and wherever a user might put it (a URL query
parameter, ``connect_args``, a ``create_engine`` keyword), on every driver, and
does nothing: this package sends no telemetry. It never reaches the driver
(psycopg would refuse it as an invalid connection option, asyncpg as an unknown
parameter).

Connecting
----------
A connect that fails is marked (:func:`..errors.mark_connect_failure`) so the
retry helpers and the FastAPI route can tell it from a connection lost later.
An asyncio dialect (``cockroachdb+asyncpg://``, ``+psycopg_async``) asked to
connect outside SQLAlchemy's asyncio layer, i.e. from ``create_engine()``
instead of ``create_async_engine()``, raises :class:`.DriverModeError` naming
both fixes before the driver is called (not ``MissingGreenlet`` and a
coroutine that was never awaited). ``create_engine()`` itself cannot refuse
the URL: SQLAlchemy's own test suite and ``create_mock_engine`` legitimately
build sync engines on asyncio dialects.

Execution and bulk inserts
--------------------------
Each driver's execution context refuses, before sending, a statement made with
:func:`.constructs.as_of_system_time` on a connection that is not
``AUTOCOMMIT`` (CockroachDB rejects the clause inside BEGIN; see
:mod:`.constructs`). On CockroachDB the dialect has no implicit insertmanyvalues
sentinel (``insertmanyvalues_implicit_sentinel``): SQLAlchemy never assumes
that generated keys or RETURNING rows follow the order of the VALUES there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import schema as sa_schema
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.sql.compiler import InsertmanyvaluesSentinelOpts
from sqlalchemy.util import concurrency as _concurrency
from typing_extensions import override

from ..errors import DriverModeError, mark_connect_failure
from . import _isolation as crdb_isolation
from . import constructs as crdb_sql
from . import reflection as crdb_reflection
from ._dbapi import fetch_row
from .compiler import (
    CockroachDBCompiler,
    CockroachDBDDLCompiler,
    CockroachDBIdentifierPreparer,
    CockroachDBTypeCompiler,
)
from .server import (
    ServerFlavor,
    ServerInfo,
    check_support_window,
    parse_server_version,
)
from .vector import VECTOR

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.engine.interfaces import (
        ConnectArgsType,
        DBAPIConnection,
        IsolationLevel,
    )

__all__ = [
    "NOOP_CONNECT_PARAMS",
    "CockroachDBDialect",
    "refuse_sync_use",
    "without_noop_params",
]

#: One round trip tells the server apart and gives both version numbers.
DETECT_SERVER_SQL = "SELECT version(), current_setting('server_version')"

# READ COMMITTED appeared in v23.2
# (https://www.cockroachlabs.com/docs/v23.2/read-committed).
_CRDB_READ_COMMITTED_SINCE = (23, 2, 0)
# REPEATABLE READ: public preview in v24.3 behind the cluster setting
# sql.txn.repeatable_read_isolation.enabled, default false (release note of
# https://github.com/cockroachdb/cockroach/pull/130089).
_CRDB_REPEATABLE_READ_SINCE = (24, 3, 0)

# CAST(oid AS REGCLASS)::TEXT names the schema of a table outside the search
# path from v26.3 (https://github.com/cockroachdb/cockroach/issues/170049,
# fixed by https://github.com/cockroachdb/cockroach/pull/170189).
_CRDB_REGCLASS_TEXT_QUALIFIED = (26, 3, 0)


#: Keywords of the older sqlalchemy-cockroachdb that are accepted and ignored.
NOOP_CONNECT_PARAMS = ("disable_cockroachdb_telemetry",)


def without_noop_params(url: URL) -> URL:
    """``url`` without the query parameters in :data:`NOOP_CONNECT_PARAMS`."""
    if not any(name in url.query for name in NOOP_CONNECT_PARAMS):
        return url
    return url.difference_update_query(NOOP_CONNECT_PARAMS)


_CRDB_INDEX_ARGS: dict[str, Any] = {
    "storing": None,
    "hash_sharded": False,
    "bucket_count": None,
    "inverted": False,
    "vector": False,
    "visibility": None,
}


def refuse_sync_use(dialect: Any, cparams: dict[str, Any]) -> None:
    """Raise DriverModeError when an asyncio dialect connects from sync code.

    SQLAlchemy's asyncio layer runs the sync engine inside a greenlet it
    spawned (``greenlet_spawn``); a plain ``create_engine()`` does not, and the
    driver's coroutine could never be awaited. SQLAlchemy 2.0's deprecated
    ``?async_fallback=true`` (which runs its own loop) is left alone.
    """
    if not dialect.is_async or str(cparams.get("async_fallback", "")).lower() in (
        "true",
        "1",
    ):
        return
    in_greenlet = getattr(_concurrency, "in_greenlet", None)
    if in_greenlet is None or in_greenlet():
        return
    scheme = f"cockroachdb+{dialect.driver}"
    raise DriverModeError(
        f"{scheme}:// is an asyncio driver, and this engine was made with "
        "create_engine(), which calls drivers synchronously. Use "
        f"sqlalchemy.ext.asyncio.create_async_engine('{scheme}://...') from "
        "async code, or for synchronous code create_engine() with "
        "'cockroachdb+psycopg://...' or 'cockroachdb+psycopg2://...'."
    )


class _CheckedExecutionContext:
    """Mixed in front of each driver's execution context (see below)."""

    compiled: Any
    _dbapi_connection: Any
    #: The driver's own ``pre_exec`` (set per class below): called directly,
    #: no super object made per statement.
    _crdb_next_pre_exec: Any

    def pre_exec(self) -> None:
        clause = getattr(self.compiled, "crdb_as_of_system_time", None)
        # AS OF SYSTEM TIME only in an implicit transaction: an explicit one
        # refuses it (constructs.py; cockroach pkg/sql/conn_executor_exec.go).
        # The driver's autocommit flag says whether a BEGIN will precede it.
        if clause is not None and not getattr(
            self._dbapi_connection.dbapi_connection, "autocommit", False
        ):
            crdb_sql.refuse_in_transaction(clause)
        self._crdb_next_pre_exec()


class CockroachDBDialect(PGDialect):
    """CockroachDB behaviour shared by every driver; see the module docstring."""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        # Each driver module mixes this class in front of SQLAlchemy's dialect
        # for that driver; its execution context gets the check above.
        ctx = cls.execution_ctx_cls
        if not issubclass(ctx, _CheckedExecutionContext):
            cls.execution_ctx_cls = type(  # type: ignore[assignment]
                f"CockroachDB{ctx.__name__}",
                (_CheckedExecutionContext, ctx),
                {"_crdb_next_pre_exec": ctx.pre_exec},
            )

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

    #: PostgreSQL's type names plus pgvector's ``vector`` (``format_type`` gives
    #: ``vector(3)`` there); CockroachDB's spelling is read in types.py.
    ischema_names = {**PGDialect.ischema_names, "vector": VECTOR}

    #: What the server said on the first connection; None until then.
    server_info: ServerInfo | None = None

    def __init__(self, disable_cockroachdb_telemetry: Any = False, **kw: Any) -> None:
        # the older package's create_engine keyword: accepted, ignored (no
        # telemetry is sent; see the module docstring)
        super().__init__(**kw)
        #: Weaker isolation levels checked on this engine: level -> the level
        #: the server really runs (None: could not be read); see _isolation.py.
        self.crdb_checked_levels: dict[str, str | None] = {}

    @override
    def create_connect_args(self, url: URL) -> ConnectArgsType:
        return super().create_connect_args(without_noop_params(url))

    @override
    def type_descriptor(self, typeobj: Any) -> Any:
        # pgvector-python's VECTOR (pgvector.sqlalchemy) runs with this
        # dialect's processors, which read what this dialect's drivers return
        # (a list from the asyncpg codec, text elsewhere) and give a list as
        # pgvector 0.4+ does; its comparators are unchanged.
        if type(typeobj).__module__.startswith("pgvector.") and (
            type(typeobj).__name__ == "VECTOR"
        ):
            return VECTOR(getattr(typeobj, "dim", None))
        return super().type_descriptor(typeobj)

    @override
    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        refuse_sync_use(self, cparams)
        for name in NOOP_CONNECT_PARAMS:  # from connect_args; ignored
            cparams.pop(name, None)
        try:
            return super().connect(*cargs, **cparams)
        except Exception as error:
            mark_connect_failure(error)
            raise

    @property
    def insertmanyvalues_implicit_sentinel(  # type: ignore[override]
        self,
    ) -> InsertmanyvaluesSentinelOpts:
        """No implicit sentinel on CockroachDB: rows of a bulk INSERT come back
        matched to their parameters only by a client-side sentinel.

        SQLAlchemy's PostgreSQL setting lets a server-generated key (SERIAL,
        IDENTITY, a sequence) serve as the sentinel: it sends ``INSERT ...
        SELECT ... ORDER BY`` and sorts the RETURNING rows by the generated key,
        assuming keys are generated in that order. CockroachDB promises no such
        order (``unique_rowid()``, distributed execution; RETURNING order is not
        guaranteed either), so there SQLAlchemy matches rows by a client-side
        sentinel value (a primary key with a Python-side default, or an
        ``insert_sentinel()`` column) and otherwise inserts row by row when the
        order matters (ORM bulk inserts, ``sort_by_parameter_order=True``).
        """
        if self.is_cockroachdb:
            return InsertmanyvaluesSentinelOpts.NOT_SUPPORTED
        return PGDialect.insertmanyvalues_implicit_sentinel

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
        info = parse_server_version(str(version), str(server_version))
        # the support window (server.py): refuse below v22.1, warn below v24.3
        check_support_window(info)
        self.server_info = info
        return info.pg_version

    def _detect_on(self, dbapi_conn: DBAPIConnection) -> None:
        """Server detection on a raw DBAPI connection, before ``initialize``.

        SQLAlchemy's ``create_engine`` runs the engine-wide isolation level
        hook before ``first_connect`` (``initialize``) on an engine's first
        connection, so the isolation gate would otherwise judge a CockroachDB
        server by PostgreSQL's levels exactly once.
        """
        row = fetch_row(dbapi_conn, DETECT_SERVER_SQL)
        assert row is not None
        self.server_info = parse_server_version(str(row[0]), str(row[1]))

    @override
    def get_isolation_level_values(
        self, dbapi_conn: DBAPIConnection
    ) -> list[IsolationLevel]:
        if self.server_info is None:
            self._detect_on(dbapi_conn)
        if not self.is_cockroachdb:
            return list(super().get_isolation_level_values(dbapi_conn))
        levels: list[IsolationLevel] = ["SERIALIZABLE", "AUTOCOMMIT"]
        if self.crdb_at_least(*_CRDB_READ_COMMITTED_SINCE):
            levels.append("READ COMMITTED")
        if self.crdb_at_least(*_CRDB_REPEATABLE_READ_SINCE):
            levels.append("REPEATABLE READ")
        return levels

    @override
    def set_isolation_level(
        self, dbapi_connection: DBAPIConnection, level: IsolationLevel
    ) -> None:
        super().set_isolation_level(dbapi_connection, level)
        # READ COMMITTED / REPEATABLE READ sit behind cluster settings on
        # CockroachDB, which upgrades silently when they are off: checked once
        # per engine and level, with a warning (_isolation.py)
        if (
            self.is_cockroachdb
            and level in crdb_isolation.LEVEL_SETTINGS
            and level not in self.crdb_checked_levels
        ):
            self.crdb_checked_levels[level] = crdb_isolation.check_level(
                dbapi_connection, level
            )

    # -- reflection (see reflection.py) --------------------------------------

    @property
    def _default_schema(self) -> str:
        return self.default_schema_name or "public"

    # SQLAlchemy builds these catalogue queries once per dialect (lru_cache);
    # on CockroachDB the calls it lacks are replaced (reflection.py
    # crdb_catalog_query): SQLAlchemy 2.1 calls pg_collation_is_visible in both.
    @override
    @functools.lru_cache  # noqa: B019 - as PGDialect's own; one per engine
    def _columns_query(self, *args: Any) -> Any:
        return self._crdb_query(super()._columns_query(*args))

    @override
    @functools.lru_cache  # noqa: B019 - as PGDialect's own; one per engine
    def _domain_query(self, *args: Any) -> Any:
        return self._crdb_query(super()._domain_query(*args))

    def _crdb_query(self, query: Any) -> Any:
        if not self.is_cockroachdb:
            return query
        # regclass::text carries the schema from v26.3 (cockroachdb/cockroach
        # PR #170189; reflection.py crdb_catalog_query)
        return crdb_reflection.crdb_catalog_query(
            query,
            regclass_text_qualified=self.crdb_at_least(*_CRDB_REGCLASS_TEXT_QUALIFIED),
        )

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
            # no hidden columns here; the older package's key, as on CockroachDB
            columns = list(columns)
            for _, table_columns in columns:
                for column in table_columns:
                    column["is_hidden"] = False
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
            # pgvector's hnsw indexes read back as cockroachdb_vector=True
            return crdb_reflection.mark_pg_vector_indexes(
                crdb_reflection.rename_pg_options(
                    super().get_multi_indexes(
                        connection, schema=schema, filter_names=filter_names, **kw
                    )
                )
            )
        # CockroachDB: pg_indexes.indexdef has STORING / USING HASH, and pg_am
        # has no btree row (tests/crdb_facts/indexes.json pg_indexes, pg_am)
        tables = self._get_table_oids(
            connection, schema, filter_names, kw.pop("scope"), kw.pop("kind"), **kw
        )
        return crdb_reflection.crdb_indexes(
            connection, schema, self._default_schema, [n for _, n in tables]
        )


#: A CockroachDB correction of a ``get_multi_*`` result:
#: ``(dialect, renamed result, connection, schema) -> result``.
_Fix = Callable[[CockroachDBDialect, Any, "Connection", str], Any]


def _renaming_options(name: str, crdb_fix: _Fix | None = None) -> Any:
    """A ``get_multi_*`` that returns PostgreSQL's answer, options renamed,
    then corrected by ``crdb_fix`` on CockroachDB."""

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
        renamed = crdb_reflection.rename_pg_options(result)
        if crdb_fix is None or not self.is_cockroachdb:
            return renamed
        return crdb_fix(self, renamed, connection, schema or self._default_schema)

    get_multi.__name__ = get_multi.__qualname__ = name
    return get_multi


def _drop_access_method(dialect: Any, result: Any, conn: Any, schema: str) -> Any:
    # CockroachDB has no table access methods: every table has relam = pg_am
    # "prefix" (tests/crdb_facts/pg_catalog_support.md section 3) while
    # default_table_access_method is a compatibility variable fixed at "heap"
    # (cockroach pkg/sql/vars.go, makeCompatStringVar), so PostgreSQL's query
    # reports USING prefix, which CockroachDB's CREATE TABLE does not accept.
    return crdb_reflection.drop_table_access_method(result)


def _mark_duplicates(dialect: Any, result: Any, conn: Any, schema: str) -> Any:
    # CockroachDB lists every unique index in pg_constraint (contype 'u'):
    # mark those as the index's duplicates (reflection.mark_index_duplicates)
    return crdb_reflection.mark_index_duplicates(result, conn, schema)


# Same queries on both servers; the option keys become cockroachdb_*, and on
# CockroachDB the result is corrected where its catalogue differs.
for _name, _fix in (
    ("get_multi_pk_constraint", None),
    ("get_multi_table_options", _drop_access_method),
    ("get_multi_unique_constraints", _mark_duplicates),
):
    setattr(CockroachDBDialect, _name, _renaming_options(_name, _fix))
del _name, _fix
