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
    is :func:`._closing.closing_connection_class`'s subclass, installed by the dialect's
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

Reset owed to the next first message (asyncpg)
    A connection that comes back with no transaction open and no reset sent
    (its last transaction committed) is not reset on return, which would be a
    round trip of its own, once one reset sent on return has succeeded on
    this pool (so a server that refuses the reset, or the statements
    CockroachDB versions lack, are met there): the driver connection *owes*
    the reset
    (:attr:`ResetWithRollback.crdb_owed`), and pays it before anything else is
    sent on it. When the next borrower's first message is SQLAlchemy's
    ``BEGIN``, the reset travels in it, as
    ``BEGIN; <reset>; COMMIT; BEGIN ...``: one message, one round trip, so a
    write costs ``BEGIN``, the statement, ``COMMIT`` (3, as stock). The reset
    runs in a transaction block of its own, committed before the borrower's
    ``BEGIN``, since statements sent before a ``BEGIN`` in one message join
    its transaction and a later ``ROLLBACK`` would undo them
    (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-MULTI-STATEMENT;
    CockroachDB matches this since
    https://github.com/cockroachdb/cockroach/pull/76834). Anything else sent
    first (a prepared statement in autocommit mode, ``COPY``, another simple
    query) is preceded by the reset as a message of its own; the pool's ping
    leaves it owed. A connection that sent nothing since its last reset, or
    nothing that leaves session state (:mod:`._statements`: ``crdb_clean``
    stays True; the ``do_execute`` hooks judge what SQLAlchemy sends and vouch
    for the harmless, ``crdb_vouched``; these methods the rest), owes none.
    If the combined message fails, the reset block is rolled back and the
    reset sent on its own (with CockroachDB's statement-by-statement
    fallback), the borrower's ``BEGIN`` after it, and that pool stops
    combining (one warning). A payment interrupted (cancelled, or refused)
    stays owed. So no borrower sees the previous one's session state; the
    price is that what the reset releases (a session-level advisory lock,
    temporary tables, ``LISTEN``) is released when the connection is next
    used or closed, not when it is returned.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Final

import asyncpg
from sqlalchemy.util import await_only

from ..sqlstate import sqlstates_of

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.pool import (
        ConnectionPoolEntry,
        ManagesConnection,
    )

__all__ = [
    "PING_SQL",
    "ResetToken",
    "ResetWithRollback",
    "SessionReset",
    "ping",
    "reset_with_rollback_class",
]

PING_SQL = "SELECT 1"
#: Around an owed reset sent with the next ``BEGIN`` (module docstring).
OWED_OPEN = "BEGIN"
OWED_CLOSE = "COMMIT"

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

#: asyncpg's private methods every statement passes through, where an owed
#: reset is paid (tests/pool/test_asyncpg_private_api.py); without them the
#: reset is sent on return, as before.
OWING_SUPPORTED = all(
    inspect.iscoroutinefunction(getattr(asyncpg.Connection, name, None))
    for name in ("_get_statement", "_copy_out", "_copy_in")
)


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
    # isinstance() against asyncpg.Connection walks the MRO in Python (its
    # metaclass's __instancecheck__), on every checkout and return: remember
    # the answer per class instead.
    kind = type(driver)
    known = _IS_ASYNCPG.get(kind)
    if known is None:
        known = _IS_ASYNCPG[kind] = isinstance(driver, asyncpg.Connection)
    return driver if known else None


_IS_ASYNCPG: dict[type[Any], bool] = {}


def ping(record: ManagesConnection, dialect: Dialect, timeout_s: float) -> None:
    """One round trip; raises when the connection is dead."""
    driver = asyncpg_of(record)
    if driver is not None:
        # Not the borrower's first message: a reset owed stays owed.
        await_only(_plain_execute(driver)(PING_SQL, timeout=timeout_s))
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
        #: Send an owed reset with the next borrower's ``BEGIN``.
        self.combine_with_begin = True
        #: A reset sent on return succeeded on this pool's server: from then
        #: on a return may owe it instead (a refusal is met on return, where
        #: it costs the connection, not the next borrower's statement).
        self.proven = False
        #: :meth:`with_rollback`'s messages by flavour, emptied when
        #: :attr:`refused` grows.
        self.with_rollback_messages: dict[bool, str] = {}

    def _crdb(self) -> list[str]:
        return [s for s in self._crdb_statements if s not in self.refused]

    def statements(self, is_cockroachdb: bool) -> str:
        if is_cockroachdb:
            return "; ".join(self._crdb())
        return PG_RESET[0]

    def with_rollback(self, is_cockroachdb: bool) -> str:
        """``ROLLBACK; <reset>``: made once per flavour and refusal set."""
        message = self.with_rollback_messages.get(is_cockroachdb)
        if message is None:
            message = f"ROLLBACK; {self.statements(is_cockroachdb)}"
            self.with_rollback_messages[is_cockroachdb] = message
        return message

    def settle_quietly(self, driver: Any, token: ResetToken) -> bool:
        """Settle a returned connection's reset without I/O, if it needs none.

        True when the connection (idle, no transaction open) needs none or
        now owes it to its next first message; False when it must be sent
        now (:meth:`run`). A reset that went out with the closing
        ``ROLLBACK`` the pool settles before asking.
        """
        if not isinstance(driver, ResetWithRollback):
            return False
        if asyncpg.Connection.is_in_transaction(driver):
            return False
        if not driver.crdb_clean:  # something was sent since the last reset
            if not (self.proven and OWING_SUPPORTED):
                return False
            driver.crdb_owed = token
        return True

    def run(self, record: ConnectionPoolEntry, is_cockroachdb: bool) -> None:
        """Reset the session; raises when the connection is unusable."""
        driver = asyncpg_of(record)
        if isinstance(driver, ResetWithRollback) and driver.crdb_reset_sent:
            driver.crdb_disarm()  # it went out with the rollback
            return
        if driver is None:
            self._run_dbapi(record, is_cockroachdb)
            return
        await_only(self.run_async(driver, is_cockroachdb))

    async def run_async(self, driver: Any, is_cockroachdb: bool) -> None:
        """:meth:`run` on an asyncpg connection, from a coroutine."""
        execute = _plain_execute(driver)
        try:
            await self.execute_async(driver, is_cockroachdb)
        except asyncpg.PostgresError:
            # In an aborted leftover transaction every statement fails (25P02);
            # the rollback below clears it. Anything else is real.
            if not driver.is_in_transaction():
                raise
        if driver.is_in_transaction():
            await execute("ROLLBACK")
            await self.execute_async(driver, is_cockroachdb)
        if isinstance(driver, ResetWithRollback):
            driver.crdb_owed = None  # paid just now
            driver.crdb_clean = True
        self.proven = True

    async def execute_async(self, driver: Any, is_cockroachdb: bool) -> None:
        """Send the reset (statement by statement if CockroachDB refuses it)."""
        try:
            await _plain_execute(driver)(self.statements(is_cockroachdb))
        except asyncpg.PostgresError as err:
            if not (
                is_cockroachdb and _rejected(err) and not driver.is_in_transaction()
            ):
                raise
            self.combined_refusal = None  # the statements, not the combining
            await self._one_by_one(driver)
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

    async def _one_by_one(self, driver: Any) -> None:
        """Each statement on its own; leaves out the ones this server lacks."""
        execute = _plain_execute(driver)
        for statement in self._crdb():
            try:
                await execute(statement)
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
                self.with_rollback_messages.clear()

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


def _plain_execute(driver: Any) -> Any:
    """``driver.execute`` without this module's additions (nothing owed or armed)."""
    if isinstance(driver, ResetWithRollback):
        return driver.crdb_execute_plain
    return driver.execute


class ResetWithRollback:
    """Mixed into the pool's asyncpg connection class: an armed connection
    sends its next ``ROLLBACK`` together with the session reset, and a
    connection that owes the reset pays it before its next message."""

    # Set in __init__, no class default (CPython 3.11 caches such reads).
    #: Armed by the pool: the next ``ROLLBACK`` carries the reset.
    crdb_armed: ResetToken | None
    #: The reset this connection owes its next first message, if any.
    crdb_owed: ResetToken | None
    #: The reset went out with the rollback; the pool skips its own.
    crdb_reset_sent: bool
    #: Nothing sent since opened or last reset (pings aside): owes no reset.
    crdb_clean: bool
    #: The SQL the ``do_execute`` hook just found harmless: its preparation
    #: or ``executemany`` passes :meth:`_get_statement` unmarked.
    crdb_vouched: str | None
    #: ``super().execute``, found once per class (no super object per call).
    _crdb_next_execute: Any = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        mro = cls.__mro__
        for klass in mro[mro.index(ResetWithRollback) + 1 :]:
            if "execute" in vars(klass):
                cls._crdb_next_execute = vars(klass)["execute"]
                break

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        parent: Any = super()
        parent.__init__(*args, **kwargs)
        self.crdb_armed = None
        self.crdb_owed = None
        self.crdb_reset_sent = False
        self.crdb_clean = True
        self.crdb_vouched = None

    async def crdb_execute_plain(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Any:
        parent: Any = super()
        return await parent.execute(query, *args, timeout=timeout)

    async def crdb_pay(self) -> None:
        """Send the owed reset as a message of its own; still owed if that fails."""
        owed = self.crdb_owed
        if owed is None:
            return
        self.crdb_owed = None
        try:
            await owed[0].execute_async(self, owed[1])
        except BaseException:
            self.crdb_owed = owed
            raise
        self.crdb_clean = True

    async def _crdb_begin_paying(self, query: str, timeout: float | None) -> Any:
        """The borrower's ``BEGIN`` with the owed reset in front (one message)."""
        owed = self.crdb_owed
        assert owed is not None
        reset, is_cockroachdb = owed
        self.crdb_owed = None
        combined = f"{OWED_OPEN}; {reset.statements(is_cockroachdb)}; {OWED_CLOSE}"
        try:
            try:
                status = await self.crdb_execute_plain(
                    f"{combined}; {query}", timeout=timeout
                )
                self.crdb_clean = True  # paid; a BEGIN leaves nothing behind
                return status
            except asyncpg.PostgresError as err:
                if asyncpg.Connection.is_in_transaction(self):
                    await self.crdb_execute_plain("ROLLBACK")
                codes = ",".join(sqlstates_of(err)) or type(err).__name__
                # Only a permanent refusal (by SQLSTATE) stops combining for
                # the pool's life; a transient failure is met by the reset
                # sent alone this once.
                if _permanently_refused(err):
                    reset.combine_with_begin = False
                    log.warning(
                        "the session reset sent with BEGIN was refused (%s); "
                        "sending it on its own from now on",
                        codes,
                    )
                else:
                    log.info("the session reset sent with BEGIN failed (%s)", codes)
                await reset.execute_async(self, is_cockroachdb)
        except BaseException:
            self.crdb_owed = owed
            raise
        self.crdb_clean = True  # paid on its own
        return await self.crdb_execute_plain(query, timeout=timeout)

    def _get_statement(self, query: str, *args: Any, **kwargs: Any) -> Any:
        # Every prepared or parameterised statement passes here (fetch*,
        # execute with arguments, executemany, prepare, cursors). A plain
        # function, as execute() is, while nothing is owed.
        if self.crdb_owed is not None:
            return self._crdb_get_statement_paying(query, *args, **kwargs)
        if query != self.crdb_vouched:
            self.crdb_clean = False
        parent: Any = super()
        return parent._get_statement(query, *args, **kwargs)

    async def _crdb_get_statement_paying(
        self, query: str, *args: Any, **kwargs: Any
    ) -> Any:
        await self.crdb_pay()
        if query != self.crdb_vouched:
            self.crdb_clean = False
        parent: Any = super()
        return await parent._get_statement(query, *args, **kwargs)

    async def _copy_out(self, *args: Any, **kwargs: Any) -> Any:
        if self.crdb_owed is not None:
            await self.crdb_pay()
        self.crdb_clean = False
        parent: Any = super()
        return await parent._copy_out(*args, **kwargs)

    async def _copy_in(self, *args: Any, **kwargs: Any) -> Any:
        if self.crdb_owed is not None:
            await self.crdb_pay()
        self.crdb_clean = False
        parent: Any = super()
        return await parent._copy_in(*args, **kwargs)

    def crdb_disarm(self) -> None:
        self.crdb_armed = None
        self.crdb_reset_sent = False

    def execute(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        # A plain function handing back asyncpg's coroutine when there is
        # nothing to add: no coroutine frame of ours on the hot path.
        if self.crdb_owed is None:
            armed = self.crdb_armed
            if armed is None:
                # asyncpg's own BEGIN/COMMIT/ROLLBACK leave nothing behind
                if not args:
                    # asyncpg's own BEGIN;, COMMIT;, ROLLBACK; (no re-packed
                    # *args on the way: the two of every transaction)
                    if query not in _TRANSACTION_CONTROL and not _is_begin(query):
                        self.crdb_clean = False
                    return self._crdb_next_execute(query, timeout=timeout)
                self.crdb_clean = False
                return self._crdb_next_execute(query, *args, timeout=timeout)
            self.crdb_armed = None
            # asyncpg's Transaction.rollback() sends exactly "ROLLBACK;"
            if not args and (
                query == "ROLLBACK;" or query.strip(" ;").upper() == "ROLLBACK"
            ):
                return self._crdb_rollback_resetting(armed, query, timeout)
        return self._crdb_execute(query, *args, timeout=timeout)

    async def _crdb_execute(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Any:
        if self.crdb_owed is not None:
            reset = self.crdb_owed[0]
            if not args and reset.combine_with_begin and _is_begin(query):
                return await self._crdb_begin_paying(query, timeout)
            await self.crdb_pay()
        if args or not _controls_transaction(query):
            self.crdb_clean = False
        armed, self.crdb_armed = self.crdb_armed, None
        # asyncpg's Transaction.rollback() sends exactly "ROLLBACK;"
        if armed is None or args or query.strip(" ;").upper() != "ROLLBACK":
            parent: Any = super()
            return await parent.execute(query, *args, timeout=timeout)
        return await self._crdb_rollback_resetting(armed, query, timeout)

    async def _crdb_rollback_resetting(
        self, armed: ResetToken, query: str, timeout: float | None
    ) -> Any:
        """The closing ``ROLLBACK`` with the reset in the same message."""
        parent: Any = super()
        reset, is_cockroachdb = armed
        combined = reset.with_rollback(is_cockroachdb)
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
        self.crdb_clean = True
        return status


#: What a connection is armed with or owes: the pool's reset and whether its
#: server is CockroachDB.
ResetToken = tuple[SessionReset, bool]


def _controls_transaction(query: str) -> bool:
    """One of asyncpg's own ``BEGIN ...;``, ``COMMIT;``, ``ROLLBACK;``: they
    leave no session state behind (whatever the transaction ran was
    judged statement by statement)."""
    return query in _TRANSACTION_CONTROL or _is_begin(query)


_TRANSACTION_CONTROL: Final = frozenset({"BEGIN;", "COMMIT;", "ROLLBACK;"})


def _is_begin(query: str) -> bool:
    # asyncpg's Transaction.start() sends "BEGIN;" or "BEGIN ISOLATION LEVEL ...;"
    return query[:5].upper() == "BEGIN" and ";" not in query.rstrip(" ;")


def reset_with_rollback_class(base: type[Any]) -> type[Any]:
    """``base`` (an ``asyncpg.Connection`` class) with :class:`ResetWithRollback`."""
    if issubclass(base, ResetWithRollback):
        return base
    cls = type(f"ResetWithRollback[{base.__qualname__}]", (ResetWithRollback, base), {})
    return cls
