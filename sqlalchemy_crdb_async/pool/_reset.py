"""What the pool says to a connection: the ping and the session reset.

Both run in SQLAlchemy's greenlet (they are called from pool methods) and use
asyncpg's simple-query protocol, one round trip each, when the driver is
asyncpg; other drivers go through the DBAPI.

Ping
    ``SELECT 1`` as one simple query: one round trip, no explicit
    transaction, no prepared statement. (An empty query would do on the
    wire, but asyncpg's ``execute`` fails on its missing command tag.)
    SQLAlchemy's asyncpg pre-ping sends ``BEGIN``, ``;``, ``ROLLBACK``.

Reset
    PostgreSQL: what ``DISCARD ALL`` does except ``DEALLOCATE ALL`` and
    ``DISCARD PLANS`` (asyncpg and SQLAlchemy cache prepared statements on the
    connection; deallocating them would break the next borrower's queries):
    ``CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *;
    SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES``
    (https://www.postgresql.org/docs/current/sql-discard.html).

    CockroachDB: ``SET default_transaction_use_follower_reads = off; CLOSE ALL;
    RESET ROLE; RESET ALL; DISCARD SEQUENCES; DISCARD TEMP`` (the first one:
    *Follower reads* below; ``DISCARD ALL`` there deallocates prepared statements too).
    ``RESET ROLE`` is needed because ``RESET ALL`` leaves the role alone, as on
    PostgreSQL (cockroach logic test ``pkg/sql/logictest/testdata/logic_test/
    set_role``: "Verify that RESET ALL does *not* affect role"), and since
    https://github.com/cockroachdb/cockroach/pull/148770 (v24.3.16, v25.1.9,
    v25.2.3, v25.4) it leaves ``session_authorization`` alone too; without it
    one borrower's ``SET ROLE`` reaches the next. ``RESET ROLE`` exists since
    v21.2. ``CLOSE ALL`` and the two ``DISCARD`` forms are optional: older
    versions refuse them (syntax 42601, unsupported 0A000, the ``CLOSE ALL``
    bug 34000 before v23.1). When the server refuses the reset, each statement
    is sent on its own once; an optional statement refused with one of those
    codes is left out for this pool from then on, with one warning in the log.
    Any other refusal (a transient error, or ``RESET ROLE`` / ``RESET ALL``
    refused) downgrades nothing: it is raised, and the pool discards that
    connection. asyncpg's own pool sends nothing at all to CockroachDB (its
    ``_detect_server_capabilities`` turns ``sql_reset`` off there).

    A transaction the server still has open (a ``BEGIN`` cancelled after it
    was sent, which SQLAlchemy never saw succeed) is rolled back and the reset
    run again, so no session is left idle in a transaction.

Reset and rollback in one message (asyncpg)
    A ``Connection`` closed with its transaction open rolls back first, then
    the pool resets the session: stock SQLAlchemy sends the ``ROLLBACK``
    alone, so a separate reset would cost one round trip more per checkout.
    Instead, while ``Connection.close()`` runs (the engine's connection class
    is :func:`closing_connection_class`'s subclass, installed by the dialect's
    ``engine_created`` hook), the pool arms the driver connection
    (:class:`ResetWithRollback`, mixed into the asyncpg connection class), and
    the ``ROLLBACK`` it sends becomes ``ROLLBACK; <reset>``: one simple-query
    message, one round trip, as stock. PostgreSQL runs the statements after
    the ``ROLLBACK`` in an implicit transaction, as it does the reset alone
    (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT).
    A rollback anywhere else (mid-checkout) is sent alone: a session's
    committed ``SET`` survives until the connection goes back to the pool.
    If the combined message fails after the ``ROLLBACK`` took effect, the
    pool runs the reset on its own as before; if the ``ROLLBACK`` itself did
    not, it is sent alone. Combining stops for that pool (one warning) only
    for a permanent refusal by SQLSTATE (:data:`PERMANENT_REFUSALS`) of the
    combined message when the reset alone then goes through as one message:
    a transient failure, or one the reset alone meets too (a statement the
    server lacks, left out from then on; follower reads, below), keeps it on.

Follower reads
    With ``default_transaction_use_follower_reads = on`` every implicit
    transaction is a read-only AS OF SYSTEM TIME one, and ``RESET ALL`` fails
    there (42601) before https://github.com/cockroachdb/cockroach/pull/148770
    (v24.3.16, v25.1.9, v25.2.3, v25.4.0). The CockroachDB reset therefore
    starts with ``SET default_transaction_use_follower_reads = off``: the
    reset as one message fails once, the statement-by-statement fallback
    turns follower reads off in a transaction of its own, and the rest,
    ``RESET ALL`` included, runs in ordinary ones (``RESET ALL`` restores the
    variable's default). Such a session's reset costs that fallback's round
    trips, and the connection is kept instead of discarded.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.util import await_only
from typing_extensions import override

from ..sqlstate import sqlstates_of

if TYPE_CHECKING:
    from types import FrameType

    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.pool import (
        ConnectionPoolEntry,
        ManagesConnection,
        PoolProxiedConnection,
    )

__all__ = [
    "PING_SQL",
    "ResetWithRollback",
    "SessionReset",
    "closing_connection_class",
    "ping",
    "reset_with_rollback_class",
]

PING_SQL = "SELECT 1"

PG_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES",
)
# With default_transaction_use_follower_reads = on (session, role default or
# URL options) every implicit transaction is a read-only AS OF SYSTEM TIME one,
# where RESET ALL fails ("AS OF SYSTEM TIME specified with READ WRITE mode",
# 42601) on releases without https://github.com/cockroachdb/cockroach/pull/148770
# (v24.3.0-.15, v25.2.0-.2; tests/crdb_facts/session_reset.md,
# https://github.com/cockroachdb/cockroach/issues/124150). Turned off first: the
# whole reset then fails once, and the statement-by-statement fallback runs it
# in a transaction of its own, so each statement after it runs in an ordinary
# one; RESET ALL then restores the variable's default for the next borrower.
FOLLOWER_READS_OFF = "SET default_transaction_use_follower_reads = off"
# CockroachDB, one statement each (see the module docstring): cockroach logic
# tests "discard" (DISCARD SEQUENCES / TEMP, CLOSE) and "set_role" (RESET ROLE).
CRDB_RESET = (
    FOLLOWER_READS_OFF,
    "CLOSE ALL",
    "RESET ROLE",
    "RESET ALL",
    "DISCARD SEQUENCES",
    "DISCARD TEMP",
)
#: Never left out: without them session state reaches the next borrower.
CRDB_REQUIRED = frozenset({"RESET ROLE", "RESET ALL"})
#: Refusals that mean "this server version does not have that statement":
#: syntax error, feature not supported, undefined function, invalid cursor name
#: (CLOSE ALL before v23.1; tests/crdb_facts/errors_more.json
#: ``session_reset_errors``), undefined object (a session variable the version
#: lacks: 'unrecognized configuration parameter', tests/crdb_facts/errors.json;
#: 42704 as on PostgreSQL).
PERMANENT_REFUSALS = frozenset({"42601", "0A000", "42883", "34000", "42704"})

log = logging.getLogger(__name__)


def _rejected(err: BaseException) -> bool:
    """The server answered and refused the statement (not a connection problem)."""
    codes = sqlstates_of(err)
    return bool(codes) and not any(c[:2] in _CONNECTION_CLASSES for c in codes)


def _permanently_refused(err: BaseException) -> bool:
    return bool(set(sqlstates_of(err)) & PERMANENT_REFUSALS)


_CONNECTION_CLASSES = frozenset({"08", "57"})


def asyncpg_of(record: ManagesConnection) -> Any | None:
    """The record's ``asyncpg.Connection``, or None for other drivers."""
    driver = record.driver_connection
    return driver if isinstance(driver, asyncpg.Connection) else None


def ping(record: ManagesConnection, dialect: Dialect, timeout_s: float) -> None:
    """One round trip; raises when the connection is dead."""
    driver = asyncpg_of(record)
    if driver is not None:
        await_only(driver.execute(PING_SQL, timeout=timeout_s))
        return
    assert record.dbapi_connection is not None
    dialect.do_ping(record.dbapi_connection)


class SessionReset:
    """Runs the reset for one pool; remembers what its server refuses."""

    def __init__(self, crdb_statements: tuple[str, ...] = CRDB_RESET) -> None:
        self._crdb_statements = crdb_statements
        #: Optional CockroachDB statements this pool's server refused for good.
        self.refused: set[str] = set()
        #: Send the reset with the ``ROLLBACK`` of a closing connection.
        self.combine = True
        #: A permanent refusal of the combined message, judged by the reset
        #: sent on its own right after it (:meth:`_judge_combined`).
        self.combined_refusal: str | None = None

    def _crdb(self) -> list[str]:
        return [s for s in self._crdb_statements if s not in self.refused]

    def statements(self, is_cockroachdb: bool) -> str:
        if is_cockroachdb:
            return "; ".join(self._crdb())
        return PG_RESET[0]

    def arm(self, fairy: PoolProxiedConnection, is_cockroachdb: bool) -> Any:
        """Make the driver connection's next ``ROLLBACK`` carry the reset;
        returns the armed connection, or None when it cannot be."""
        driver = fairy.driver_connection
        if not self.combine or not isinstance(driver, ResetWithRollback):
            return None
        driver.crdb_arm(self, is_cockroachdb)
        return driver

    def run(self, record: ConnectionPoolEntry, is_cockroachdb: bool) -> None:
        """Reset the session; raises when the connection is unusable."""
        driver = asyncpg_of(record)
        if isinstance(driver, ResetWithRollback) and driver.crdb_reset_sent:
            driver.crdb_disarm()  # it went out with the rollback
            return
        if driver is None:
            self._run_dbapi(record, is_cockroachdb)
            return
        try:
            self._execute(driver, is_cockroachdb)
        except asyncpg.PostgresError:
            # In an aborted leftover transaction every statement fails (25P02);
            # the rollback below clears it. Anything else is real.
            if not driver.is_in_transaction():
                raise
        if driver.is_in_transaction():
            await_only(driver.execute("ROLLBACK"))
            self._execute(driver, is_cockroachdb)

    def _execute(self, driver: Any, is_cockroachdb: bool) -> None:
        try:
            await_only(driver.execute(self.statements(is_cockroachdb)))
        except asyncpg.PostgresError as err:
            if not (
                is_cockroachdb and _rejected(err) and not driver.is_in_transaction()
            ):
                raise
            self.combined_refusal = None  # the statements, not the combining
            self._one_by_one(driver)
        self._judge_combined()

    def _judge_combined(self) -> None:
        """Stop combining only when the server refused the combined message for
        good and then took the same reset sent alone as one message: the
        combination is what it refuses. A transient failure (a timeout, a
        conflict) or one the reset alone met too (a statement this server
        lacks, now left out; follower reads) leaves combining on."""
        codes, self.combined_refusal = self.combined_refusal, None
        if codes is None or not self.combine:
            return
        self.combine = False
        log.warning(
            "the session reset sent with ROLLBACK was refused (%s) and the reset "
            "alone was not; resetting separately from now on",
            codes,
        )

    def _one_by_one(self, driver: Any) -> None:
        """Each statement on its own; leaves out the ones this server lacks."""
        for statement in self._crdb():
            try:
                await_only(driver.execute(statement))
            except asyncpg.PostgresError as err:
                if statement in CRDB_REQUIRED or not _permanently_refused(err):
                    raise
                log.warning(
                    "CockroachDB refused %r in the session reset (%s); this pool "
                    "leaves it out from now on",
                    statement,
                    ",".join(sqlstates_of(err)),
                )
                self.refused.add(statement)

    def _run_dbapi(self, record: ConnectionPoolEntry, is_cockroachdb: bool) -> None:
        conn = record.dbapi_connection
        assert conn is not None
        cursor = conn.cursor()
        try:
            for statement in self.statements(is_cockroachdb).split("; "):
                cursor.execute(statement)
        finally:
            cursor.close()
        conn.commit()


class ResetWithRollback:
    """Mixed into the pool's asyncpg connection class: an armed connection
    sends its next ``ROLLBACK`` together with the session reset."""

    _crdb_armed: tuple[SessionReset, bool] | None = None
    #: The reset went out with the rollback; the pool skips its own.
    crdb_reset_sent = False

    def crdb_arm(self, reset: SessionReset, is_cockroachdb: bool) -> None:
        self._crdb_armed = (reset, is_cockroachdb)
        self.crdb_reset_sent = False

    def crdb_disarm(self) -> None:
        self._crdb_armed = None
        self.crdb_reset_sent = False

    async def execute(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Any:
        armed, self._crdb_armed = self._crdb_armed, None
        parent: Any = super()
        # asyncpg's Transaction.rollback() sends exactly "ROLLBACK;"
        if armed is None or args or query.strip(" ;").upper() != "ROLLBACK":
            return await parent.execute(query, *args, timeout=timeout)
        reset, is_cockroachdb = armed
        combined = f"ROLLBACK; {reset.statements(is_cockroachdb)}"
        try:
            status = await parent.execute(combined, timeout=timeout)
        except asyncpg.PostgresError as err:
            if parent.is_in_transaction():
                return await parent.execute(query, timeout=timeout)
            # the pool now sends the reset on its own (crdb_reset_sent stays
            # False), which judges a permanent refusal (_judge_combined)
            codes = ",".join(sqlstates_of(err)) or type(err).__name__
            log.info("the session reset sent with ROLLBACK failed (%s)", codes)
            if _permanently_refused(err):
                reset.combined_refusal = codes
            return "ROLLBACK"
        self.crdb_reset_sent = True
        return status


def reset_with_rollback_class(base: type[Any]) -> type[Any]:
    """``base`` (an ``asyncpg.Connection`` class) with :class:`ResetWithRollback`."""
    if issubclass(base, ResetWithRollback):
        return base
    cls = type(f"ResetWithRollback[{base.__qualname__}]", (ResetWithRollback, base), {})
    return cls


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

    class ClosingConnection(base):  # type: ignore[valid-type,misc]
        _crdb_arms_reset = True
        _crdb_closing = False

        @override
        def _rollback_impl(self) -> None:
            fairy = self._dbapi_connection
            arm = getattr(getattr(fairy, "_pool", None), "_arm_reset", None)
            if (
                arm is not None
                and isinstance(
                    getattr(fairy, "driver_connection", None), ResetWithRollback
                )
                and (self._crdb_closing or _orm_closes(self))
            ):
                arm(fairy)
            super()._rollback_impl()

        @override
        def close(self) -> None:
            driver = getattr(self._dbapi_connection, "driver_connection", None)
            self._crdb_closing = True
            try:
                super().close()
            finally:
                self._crdb_closing = False
                if isinstance(driver, ResetWithRollback):
                    driver.crdb_disarm()

    ClosingConnection.__qualname__ = f"ResetOnClose[{base.__qualname__}]"
    _CLOSING_CLASSES[base] = ClosingConnection
    return ClosingConnection


def _orm_closes(conn: Connection) -> bool:
    """True while ``sqlalchemy.orm.SessionTransaction.close()`` rolls back
    ``conn`` and is about to close it (``autoclose``: the session opened it).

    SQLAlchemy offers no hook that says a rollback precedes the return to the
    pool, so this reads the caller's frame (a few frames up, only on
    rollback); if SQLAlchemy changes that method, nothing breaks: the reset
    goes out on its own again, and tests/pool/test_round_trips.py says so.
    """
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_ORM_FRAMES):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "close" and code.co_filename.endswith(_ORM_SESSION_FILE):
            local = frame.f_locals
            owner = local.get("self")
            return (
                local.get("connection") is conn
                and bool(local.get("autoclose"))
                and getattr(owner, "_parent", True) is None
            )
        frame = frame.f_back
    return False


_ORM_FRAMES = 8
_ORM_SESSION_FILE = os.path.join("orm", "session.py")
