"""The pool's hooks outside the pool object: on the dialect.

:class:`~._pool.CockroachPool` wraps five methods of its dialect *instance*
(:func:`install_dialect_hooks`, once per dialect, so a recreated pool finds
them installed). They are instance attributes wrapping the dialect's own
methods, not SQLAlchemy dialect events: a dialect with any event listener
has SQLAlchemy look its ``do_execute`` listeners up and iterate them on every
statement, which cost more than the pool's whole checkout and return. The
wrappers cost one call each. A ``do_execute`` listener a user adds still runs
first, as SQLAlchemy calls it; one that executes the statement itself
(returns True) should do it through ``dialect.do_execute`` (as
:mod:`sqlalchemy_crdb_async.retry.replay` does), so the hook still sees it.

``connect``
    While a pool creates a connection it publishes a callback in
    :data:`CONNECTING` (taking the dialect and the connect arguments); the
    hook calls it, so that pool can reorder a multi-host URL's hosts and
    choose asyncpg's ``connection_class``. This module knows nothing of the
    pool beyond that callback. Each call gets its own copy of the connect
    arguments (``**cparams``).
``do_execute``, ``do_execute_no_params``, ``do_executemany``
    Every statement SQLAlchemy sends passes here (so does each one
    :mod:`sqlalchemy_crdb_async.retry.replay` replays, through the same
    methods). On a connection of the pool's session-resetting class
    (:class:`._reset.ResetWithRollback`) the hook marks the connection as
    needing its reset unless the statement leaves nothing behind
    (:func:`._statements.leaves_nothing`; such a statement is vouched for,
    ``crdb_vouched``, so that the asyncpg-level hook its preparation or
    ``executemany`` passes does not mark the connection), and, in autocommit
    mode (no ``BEGIN`` to carry it), pays a reset the connection owes before
    the statement goes out. A statement is judged while the connection owes
    its reset too: the ``BEGIN`` that carries the reset leaves the
    connection clean, so a harmless read after it goes back with no reset of
    its own. The asyncpg-level hooks of :mod:`._reset` cannot see
    this: SQLAlchemy runs a statement it has run before on the connection
    through its cached prepared statement, which passes no ``Connection``
    method.
``is_disconnect``
    An error with a shutdown SQLSTATE (57P01/57P02/57P03) is a disconnect
    even while the socket is still open: CockroachDB sends 57P01 to a
    draining node's sessions before closing them
    (https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/server.go;
    tests/crdb_facts/errors.json ``server_shutdown_57P01``). SQLAlchemy then
    invalidates the connection and calls the pool's ``_invalidate``.

The pool's background task lives in :mod:`._maintenance`.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.util import await_only

from ..sqlstate import is_server_shutdown
from ._reset import ResetWithRollback
from ._statements import VERDICT, leaves_nothing

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine.interfaces import Dialect

__all__ = ["CONNECTING", "install_dialect_hooks"]

#: The callback of the pool creating a connection right now, for the
#: ``connect`` hook.
CONNECTING: contextvars.ContextVar[Callable[[Dialect, dict[str, Any]], None] | None] = (
    contextvars.ContextVar("sqlalchemy_crdb_async_pool_connecting", default=None)
)

#: Set in the dialect's ``__dict__`` once the hooks are installed.
_INSTALLED = "_crdb_pool_hooks"
_DEFAULT_DO_EXECUTE = DefaultDialect.do_execute


def _track(cursor: Any, statement: str, context: Any) -> None:
    """Before a statement goes out: pay an owed reset in autocommit mode, and
    mark the connection as needing its reset unless the statement leaves
    nothing behind. ``do_execute``'s hook inlines this (the hot one)."""
    # SQLAlchemy's asyncpg cursor (2.0 and 2.1) keeps its asyncpg connection
    # as ``_connection`` and its adapted connection as ``_adapt_connection``.
    # Plain attribute reads, not getattr(): every statement passes here.
    try:
        driver = cursor._connection
    except AttributeError:  # another driver's cursor: nothing to track
        return
    if isinstance(driver, ResetWithRollback):
        owed = driver.crdb_owed
        if owed is not None:
            _pay_in_autocommit(cursor, driver)
        # Judged while clean (one statement that leaves state is enough), or
        # while a reset is owed: the BEGIN below pays it and makes the
        # connection clean again before the statement is prepared.
        if driver.crdb_clean or owed is not None:
            # the verdict kept on the (cached) compiled statement, else judged
            try:
                verdict = context.compiled._crdb_leaves_nothing
            except AttributeError:  # not judged yet, or no compiled statement
                verdict = leaves_nothing(context)
            if verdict:
                # its preparation or executemany below marks nothing
                driver.crdb_vouched = statement
            else:
                driver.crdb_clean = False
                driver.crdb_vouched = None  # nor may an earlier vouching


# read above as a plain attribute (what getattr(compiled, VERDICT) reads)
assert VERDICT == "_crdb_leaves_nothing"


def _pay_in_autocommit(cursor: Any, driver: Any) -> None:
    """With no ``BEGIN`` coming to carry it, the owed reset goes out now."""
    if getattr(cursor._adapt_connection, "isolation_level", None) == "autocommit":
        await_only(driver.crdb_pay())


def install_dialect_hooks(dialect: Dialect) -> None:
    """Wrap ``dialect``'s methods above on the instance, once per dialect."""
    attrs = vars(dialect)
    if attrs.get(_INSTALLED):
        return
    # the methods as they are now (a dialect's own, or another wrapper)
    connect = dialect.connect
    do_execute = dialect.do_execute
    do_executemany = dialect.do_executemany
    do_execute_no_params = dialect.do_execute_no_params
    is_disconnect = dialect.is_disconnect

    def connect_hook(*cargs: Any, **cparams: Any) -> Any:
        prepare = CONNECTING.get()
        if prepare is not None:
            prepare(dialect, cparams)
        return connect(*cargs, **cparams)

    # SQLAlchemy's own do_execute is cursor.execute(statement, parameters):
    # called here directly, one call fewer per statement.
    default_do_execute = getattr(do_execute, "__func__", None) is _DEFAULT_DO_EXECUTE

    def do_execute_hook(
        cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        # _track, inlined: every statement with parameters passes here
        try:
            driver = cursor._connection
        except AttributeError:
            driver = None
        if isinstance(driver, ResetWithRollback):
            owed = driver.crdb_owed
            if owed is not None:
                _pay_in_autocommit(cursor, driver)
            if driver.crdb_clean or owed is not None:
                try:
                    verdict = context.compiled._crdb_leaves_nothing
                except AttributeError:
                    verdict = leaves_nothing(context)
                if verdict:
                    driver.crdb_vouched = statement
                else:
                    driver.crdb_clean = False
                    driver.crdb_vouched = None
        if default_do_execute:
            cursor.execute(statement, parameters)
        else:
            do_execute(cursor, statement, parameters, context)

    def do_executemany_hook(
        cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        _track(cursor, statement, context)
        do_executemany(cursor, statement, parameters, context)

    def do_execute_no_params_hook(
        cursor: Any, statement: str, context: Any = None
    ) -> None:
        _track(cursor, statement, context)
        do_execute_no_params(cursor, statement, context)

    def is_disconnect_hook(e: Any, connection: Any, cursor: Any) -> bool:
        return bool(is_disconnect(e, connection, cursor)) or is_server_shutdown(e)

    attrs.update(
        connect=connect_hook,
        do_execute=do_execute_hook,
        do_executemany=do_executemany_hook,
        do_execute_no_params=do_execute_no_params_hook,
        is_disconnect=is_disconnect_hook,
    )
    attrs[_INSTALLED] = True
