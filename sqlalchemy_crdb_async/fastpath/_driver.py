"""Run a :class:`~._compile.Plan` on an asyncpg connection (internal).

Each asyncpg connection gets a small cache (:class:`StatementCache`, an
attribute of the dialect's asyncpg connection class, or kept in a
``WeakKeyDictionary`` for a connection class without a ``__dict__``, so it
goes with the connection) of the statements the fast path prepared on it:
asyncpg's ``PreparedStatement`` (a named server-side statement), and the
result processors picked for the column types the server reported. A first
execution on a connection costs one more round trip (Parse, Describe); every
later one is Bind, Execute, Sync: one round trip.

Straight to asyncpg's protocol
    A cached statement runs as ``PreparedStatement.fetch()`` runs it, minus
    its checks that do not apply here: the statement's state goes to the
    connection's protocol (``Protocol.bind_execute``, the call asyncpg's own
    ``fetch`` ends in, and the one APM tools that wrap asyncpg instrument),
    with the connection's ``command_timeout`` as asyncpg applies it. The
    checks that do apply are kept: a statement asyncpg closed (after it
    reloaded its schema state) is prepared again; a closed connection or one
    busy with another operation is refused by the protocol itself
    (``InterfaceError``). ``tests/fastpath/test_private_api.py`` fails,
    naming what changed, if asyncpg moves any of this.

Stale plans, handled as the ordinary path handles them
    After ``ALTER TABLE`` changes a result type, the server refuses the old
    statement (0A000 "cached plan must not change result type"; asyncpg's
    ``InvalidCachedStatementError`` on PostgreSQL, a plain 0A000 on most
    CockroachDB releases, recognised by :func:`~..retry.classify.classify`).
    The connection's cache (this one and asyncpg's) is dropped; outside a
    transaction the statement is prepared again and run once more, as asyncpg
    does for its own cache; inside one the transaction is already aborted, so
    the error is raised and the retry helpers, which classify it
    ``RETRY_AFTER_CACHE_CLEAR``, run the transaction again. The dialect's
    invalidation time (``_invalidate_schema_cache_asof``, bumped by DDL run
    through SQLAlchemy and by the retry helpers) also empties the cache, as it
    does SQLAlchemy's adapter's.

Errors reach the caller as the ordinary path raises them: SQLAlchemy's
``DBAPIError`` subclasses with ``orig.sqlstate`` (so ``classify``, the FastAPI
answers and ``except IntegrityError`` see no difference).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import asyncpg
from sqlalchemy import exc

from ..dialect.asyncpg import translate_error
from ..retry.classify import ErrorKind, classify

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import Dialect

    from ._compile import Plan

__all__ = [
    "MAX_STATEMENTS",
    "CachedStatement",
    "StatementCache",
    "fetch",
    "rowcount",
    "via_cursor",
    "wrap_error",
]

_ROWCOUNT: Final = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")

#: Statements kept per connection; the oldest is dropped past this.
MAX_STATEMENTS: Final = 256


@dataclass
class CachedStatement:
    """One statement prepared on one connection."""

    statement: Any
    #: Result processors for the column types the server reported, or None.
    processors: list[Any] | None
    #: asyncpg's ``PreparedStatementState`` of ``statement``: what its
    #: protocol runs.
    state: Any = field(init=False)

    def __post_init__(self) -> None:
        self.state = self.statement._state


@dataclass
class StatementCache:
    """The fast path's statements on one connection."""

    #: The dialect's invalidation time this cache was last checked against.
    asof: float
    entries: dict[str, CachedStatement] = field(default_factory=dict)


_caches: weakref.WeakKeyDictionary[Any, StatementCache] = weakref.WeakKeyDictionary()


def _cache_of(driver: Any, dialect: Dialect) -> StatementCache:
    asof = getattr(dialect, "_invalidate_schema_cache_asof", 0.0)
    # An attribute of the dialect's connection class (vector_connection_class
    # subclasses asyncpg's, so it has a __dict__); a weak mapping otherwise.
    cache: StatementCache | None = getattr(driver, "crdb_statements", None)
    if cache is None:
        cache = _caches.get(driver)
        if cache is None:
            cache = StatementCache(asof)
            try:
                driver.crdb_statements = cache
            except AttributeError:  # __slots__ only: asyncpg's own class
                _caches[driver] = cache
    if cache.asof < asof:
        cache.entries.clear()
        cache.asof = asof
    return cache


async def _prepare(
    driver: Any, cache: StatementCache, plan: Plan, dialect: Dialect
) -> CachedStatement:
    # Preparing leaves no session state the pool's reset undoes (prepared
    # statements are kept across borrowers), so it does not make the
    # connection owe a reset (pool/_reset.py, ``crdb_clean``).
    clean = getattr(driver, "crdb_clean", None)
    statement = await driver.prepare(plan.sql)
    if clean is not None:
        driver.crdb_clean = clean
    oids = [attr.type.oid for attr in statement.get_attributes()]
    entry = CachedStatement(statement, plan.result_processors(dialect, oids))
    entries = cache.entries
    if len(entries) >= MAX_STATEMENTS:
        del entries[next(iter(entries))]
    entries[plan.sql] = entry
    return entry


def rowcount(status: bytes | int | None) -> int:
    """The row count in a command tag (b"UPDATE 3", b"INSERT 0 1"), else -1;
    an int (the cursor's rowcount) is the count already."""
    if isinstance(status, int):
        return status
    found = _ROWCOUNT.match(status.decode() if status else "")
    return int(found.group(1)) if found else -1


async def fetch(
    driver: Any, plan: Plan, args: list[Any], dialect: Dialect
) -> tuple[list[Any], list[Any] | None, bytes | None]:
    """Run ``plan``: (driver records, result processors, command tag as the
    server sent it); the tag is parsed (:func:`rowcount`) only by the methods
    that want the count.

    Raises the driver's own error; :func:`wrap_error` makes it SQLAlchemy's.
    """
    # A pool that defers its session reset to the connection's next message
    # pays it where asyncpg's _get_statement runs, which a cached statement
    # does not pass: pay it here first (CockroachPool's connections only).
    if getattr(driver, "crdb_owed", None) is not None:
        await driver.crdb_pay()
    cache: StatementCache | None = getattr(driver, "crdb_statements", None)
    if cache is None or cache.asof < getattr(
        dialect, "_invalidate_schema_cache_asof", 0.0
    ):
        cache = _cache_of(driver, dialect)
    entry = cache.entries.get(plan.sql)
    if entry is None or entry.state.closed:
        entry = await _prepare(driver, cache, plan, dialect)
    try:
        # What PreparedStatement.fetch() awaits (module docstring).
        records, status, _ = await driver._protocol.bind_execute(
            entry.state, args, "", 0, True, None
        )
    except asyncpg.PostgresError as err:
        if classify(err).kind is not ErrorKind.RETRY_AFTER_CACHE_CLEAR:
            raise
        cache.entries.clear()
        await driver.reload_schema_state()  # asyncpg's own caches, no I/O
        if driver.is_in_transaction():
            raise
        entry = await _prepare(driver, cache, plan, dialect)
        records, status, _ = await driver._protocol.bind_execute(
            entry.state, args, "", 0, True, None
        )
    except asyncpg.exceptions.OutdatedSchemaCacheError:
        # A type's definition changed under a decoded row: as
        # PreparedStatement does, asyncpg's caches are reloaded and this
        # statement is prepared afresh next time.
        cache.entries.pop(plan.sql, None)
        await driver.reload_schema_state()
        raise
    return records, entry.processors, status


def via_cursor(
    connection: Connection, plan: Plan, args: list[Any]
) -> tuple[list[Any], list[Any] | None, int]:
    """Run ``plan`` through SQLAlchemy's cursor (in its greenlet), so that
    ``retrying_session`` records the statement and replays it on a retry."""
    result = connection.exec_driver_sql(plan.sql, tuple(args))
    description = result.cursor.description if result.returns_rows else None
    records = [tuple(row) for row in result.fetchall()] if description else []
    oids: list[Any] = [column[1] for column in description or ()]
    processors = (
        plan.result_processors(connection.dialect, oids) if description else None
    )
    return records, processors, result.rowcount


def wrap_error(
    err: Exception,
    plan: Plan,
    args: list[Any],
    dialect: Dialect,
    *,
    invalidated: bool,
) -> Exception:
    """The driver's ``err`` as SQLAlchemy raises it on the ordinary path."""
    dbapi = dialect.loaded_dbapi
    orig = err if isinstance(err, dbapi.Error) else translate_error(dbapi, err)
    if orig is None:
        return err
    return exc.DBAPIError.instance(
        plan.sql,
        tuple(args),
        orig,
        dbapi.Error,
        hide_parameters=bool(getattr(dialect, "hide_parameters", False)),
        connection_invalidated=invalidated,
        dialect=dialect,
    )
