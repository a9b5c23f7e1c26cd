"""The engine's ``Connection`` class that arms the closing rollback (internal).

The pool sends the session reset in the same message as the ``ROLLBACK`` that
closes a connection's transaction (:mod:`._reset`, "Round trips"). SQLAlchemy
says nothing to the pool about which rollback is the closing one, so the
dialect installs :func:`closing_connection_class`'s subclass of
``sqlalchemy.engine.Connection``: its ``_rollback_impl`` arms the driver
connection (``pool._arm_reset(fairy)``) when the rollback is the one
``Connection.close()`` sends, or the one an ORM session sends before it
closes a connection it opened, and only when the connection needs its reset
(a clean one rolls back plainly, as stock). Which rollback it is, is read
from the caller's frames, on that path only; the rest of a checkout calls
nothing of this module. An arm whose ``ROLLBACK`` never goes out (no
transaction was open on the server) is dropped by the pool's return.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection as _Connection
from typing_extensions import override

if TYPE_CHECKING:
    from types import FrameType

    from sqlalchemy.engine import Connection

__all__ = ["closing_connection_class"]

_CLOSING_CLASSES: dict[type[Connection], type[Connection]] = {}


def closing_connection_class(base: type[Connection]) -> type[Connection]:
    """A ``Connection`` subclass that lets the pool arm the driver connection
    (``pool._arm_reset(fairy)``) for the rollback it sends just before it goes
    back to the pool: in ``close()``, and in an ORM session's close, which
    rolls back each connection it opened and then closes it."""
    if getattr(base, "_crdb_arms_reset", False):
        return base
    cls = _CLOSING_CLASSES.get(base)
    if cls is not None:
        return cls

    # SQLAlchemy's method, called directly: no super object per call.
    base_rollback_impl = base._rollback_impl

    class ClosingConnection(base):  # type: ignore[valid-type,misc]
        _crdb_arms_reset = True

        @override
        def _rollback_impl(self) -> None:
            # SQLAlchemy's asyncpg adapter keeps the driver connection as
            # ``_connection``; a clean one (nothing sent left state behind,
            # pool/_statements.py) rolls back plainly, as stock.
            fairy = self._dbapi_connection
            try:
                clean = fairy.dbapi_connection._connection.crdb_clean
            except AttributeError:  # not the pool's asyncpg connection class
                clean = True
            if not clean and (_core_closes(self) or _orm_closes(self)):
                arm = getattr(getattr(fairy, "_pool", None), "_arm_reset", None)
                if arm is not None:
                    # Disarmed by the pool's return of this connection, if
                    # the rollback did not go out (ResetWithRollback).
                    arm(fairy)
            base_rollback_impl(self)

    ClosingConnection.__qualname__ = f"ResetOnClose[{base.__qualname__}]"
    _CLOSING_CLASSES[base] = ClosingConnection
    return ClosingConnection


def _core_closes(conn: Connection) -> bool:
    """True while ``Connection.close()`` of ``conn`` rolls back its open
    transaction, just before the connection goes back to the pool.

    Read from the caller's frames (a few up, only on the rollback of a
    connection that needs its reset), as :func:`_orm_closes` does: no hook
    of SQLAlchemy says so, and a ``close()`` override of our own would cost
    every checkout a call.
    """
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_CORE_FRAMES):
        if frame is None:
            return False
        if frame.f_code is _CORE_CLOSE:
            return frame.f_locals.get("self") is conn
        frame = frame.f_back
    return False


def _orm_closes(conn: Connection) -> bool:
    """True while ``sqlalchemy.orm.SessionTransaction.close()`` rolls back
    ``conn`` and is about to close it (``autoclose``: the session opened it).

    SQLAlchemy offers no hook that says a rollback precedes the return to the
    pool, so this reads the caller's frame (a few frames up, only on
    rollback); if SQLAlchemy changes that method, nothing breaks: the
    connection owes the reset to its next message instead, and
    ``test_an_orm_session_close_sends_the_reset_with_its_rollback``
    (tests/pool/test_round_trips.py) says so.
    The frame is looked for once by name; after that ``sys._getframe(depth)``
    at the depth it was found goes straight to it (no frame objects made
    for the frames between).
    """
    depth = _ORM_CLOSE[1]
    if depth:
        try:
            frame: FrameType | None = sys._getframe(depth)
        except ValueError:
            frame = None
        if frame is not None and frame.f_code is _ORM_CLOSE[0]:
            return _closes_here(frame, conn)
    frame = sys._getframe(1)
    for depth in range(1, _ORM_FRAMES + 1):
        if frame is None:
            return False
        code = frame.f_code
        if code is _ORM_CLOSE[0] or (
            code.co_name == "close" and code.co_filename.endswith(_ORM_SESSION_FILE)
        ):
            _ORM_CLOSE[:] = [code, depth]
            return _closes_here(frame, conn)
        frame = frame.f_back
    return False


def _closes_here(frame: FrameType, conn: Connection) -> bool:
    local = frame.f_locals
    return (
        local.get("connection") is conn
        and bool(local.get("autoclose"))
        and getattr(local.get("self"), "_parent", True) is None
    )


#: ``Connection.close``'s code object, and how far up ``_core_closes`` looks
#: (``close`` -> ``Transaction.close`` -> ``_do_close`` -> ``_close_impl`` ->
#: ``_connection_rollback_impl`` -> ``_rollback_impl`` in SQLAlchemy 2.0 and
#: 2.1).
_CORE_CLOSE = _Connection.close.__code__
_CORE_FRAMES = 8
_ORM_FRAMES = 8
#: ``SessionTransaction.close``'s code object, and its depth from
#: ``_orm_closes`` when last found (0: not found yet).
_ORM_CLOSE: list[Any] = [None, 0]
_ORM_SESSION_FILE = os.path.join("orm", "session.py")
