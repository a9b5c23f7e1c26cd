"""The pool's hooks outside the pool object: dialect events.

:class:`~._pool.CockroachPool` installs these listeners on its dialect, once
per dialect (they are module-level functions, so a recreated pool finds them
installed):

``do_connect``
    While a pool creates a connection it publishes a callback in
    :data:`CONNECTING` (taking the dialect and the connect arguments); the
    listener calls it, so that pool can reorder a multi-host
    URL's hosts and choose asyncpg's ``connection_class``. This module knows
    nothing of the pool beyond that callback. SQLAlchemy hands each
    ``do_connect`` call its own copy of the connect arguments.
``do_execute``, ``do_execute_no_params``, ``do_executemany``
    Every statement SQLAlchemy sends passes here first. On a connection of
    the pool's session-resetting class (:class:`._reset.ResetWithRollback`)
    the listener marks the connection as needing its reset unless the
    statement leaves nothing behind (:func:`._statements.leaves_nothing`),
    and, in autocommit mode (no ``BEGIN`` to carry it), pays a reset the
    connection owes before the statement goes out. The asyncpg-level hooks
    of :mod:`._reset` cannot see this: SQLAlchemy runs a statement it has
    run before on the connection through its cached prepared statement,
    which passes no ``Connection`` method. The listeners return False, so
    SQLAlchemy then executes the statement as usual.
``handle_error``
    A statement that fails with a shutdown SQLSTATE (57P01/57P02/57P03) is a
    disconnect even while the socket is still open: CockroachDB sends 57P01
    to a draining node's sessions before closing them
    (https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/pgwire/server.go;
    tests/crdb_facts/errors.json ``server_shutdown_57P01``). SQLAlchemy then
    invalidates the connection and calls the pool's ``_invalidate``.

The pool's background task lives in :mod:`._maintenance`.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.util import await_only

from ..sqlstate import is_server_shutdown
from ._reset import ResetWithRollback
from ._statements import VERDICT, leaves_nothing

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import ExceptionContext
    from sqlalchemy.engine.interfaces import Dialect

__all__ = ["CONNECTING", "install_dialect_listeners"]

log = logging.getLogger(__name__)

#: The callback of the pool creating a connection right now, for the
#: ``do_connect`` listener.
CONNECTING: contextvars.ContextVar[Callable[[Dialect, dict[str, Any]], None] | None] = (
    contextvars.ContextVar("sqlalchemy_crdb_async_pool_connecting", default=None)
)


def _on_do_connect(
    dialect: Dialect, conn_rec: Any, cargs: list[Any], cparams: dict[str, Any]
) -> None:
    prepare = CONNECTING.get()
    if prepare is not None:
        prepare(dialect, cparams)


def _on_do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    # SQLAlchemy's asyncpg cursor (2.0 and 2.1) keeps its asyncpg connection
    # as ``_connection`` and its adapted connection as ``_adapt_connection``.
    # Plain attribute reads, not getattr(): every statement passes here.
    try:
        driver = cursor._connection
    except AttributeError:  # another driver's cursor: nothing to track
        return False
    if isinstance(driver, ResetWithRollback):
        if (
            driver.crdb_owed is not None
            and getattr(cursor._adapt_connection, "isolation_level", None)
            == "autocommit"
        ):
            await_only(driver.crdb_pay())
        if driver.crdb_clean:  # (one statement that leaves state is enough)
            # the verdict kept on the (cached) compiled statement, else judged
            try:
                verdict = context.compiled._crdb_leaves_nothing
            except AttributeError:  # not judged yet, or no compiled statement
                verdict = leaves_nothing(context)
            if not verdict:
                driver.crdb_clean = False
    return False


# read above as a plain attribute (what getattr(compiled, VERDICT) reads)
assert VERDICT == "_crdb_leaves_nothing"


def _on_do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
    return _on_do_execute(cursor, statement, None, context)


def _on_handle_error(context: ExceptionContext) -> None:
    if is_server_shutdown(context.original_exception):
        context.is_disconnect = True


def install_dialect_listeners(dialect: Dialect) -> None:
    """Install the listeners above, once per dialect."""
    if not event.contains(dialect, "do_connect", _on_do_connect):
        event.listen(dialect, "do_connect", _on_do_connect)
    for name, listener in (
        ("do_execute", _on_do_execute),
        ("do_executemany", _on_do_execute),
        ("do_execute_no_params", _on_do_execute_no_params),
    ):
        if not event.contains(dialect, name, listener):
            event.listen(dialect, name, listener)
    if not event.contains(dialect, "handle_error", _on_handle_error):
        event.listen(dialect, "handle_error", _on_handle_error)
