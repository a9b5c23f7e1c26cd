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

    CockroachDB: ``CLOSE ALL; RESET ROLE; RESET ALL; DISCARD SEQUENCES;
    DISCARD TEMP`` (``DISCARD ALL`` there deallocates prepared statements too).
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
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.util import await_only

from ..sqlstate import sqlstates_of

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.pool import ConnectionPoolEntry, ManagesConnection

__all__ = ["PING_SQL", "SessionReset", "ping"]

PING_SQL = "SELECT 1"

PG_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES",
)
# CockroachDB, one statement each (see the module docstring): cockroach logic
# tests "discard" (DISCARD SEQUENCES / TEMP, CLOSE) and "set_role" (RESET ROLE).
CRDB_RESET = (
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
#: ``session_reset_errors``).
PERMANENT_REFUSALS = frozenset({"42601", "0A000", "42883", "34000"})

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

    def _crdb(self) -> list[str]:
        return [s for s in self._crdb_statements if s not in self.refused]

    def statements(self, is_cockroachdb: bool) -> str:
        if is_cockroachdb:
            return "; ".join(self._crdb())
        return PG_RESET[0]

    def run(self, record: ConnectionPoolEntry, is_cockroachdb: bool) -> None:
        """Reset the session; raises when the connection is unusable."""
        driver = asyncpg_of(record)
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
            self._one_by_one(driver)

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
