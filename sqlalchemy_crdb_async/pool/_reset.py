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

    CockroachDB: ``CLOSE ALL; RESET ALL; DISCARD SEQUENCES; DISCARD TEMP``
    (``DISCARD ALL`` there deallocates prepared statements too, and
    ``DISCARD SEQUENCES``/``TEMP`` exist in recent versions: cockroach logic
    test ``pkg/sql/logictest/testdata/logic_test/discard``); a server that
    rejects it (any refusal: syntax, unsupported, or not allowed in the
    implicit transaction of a multi-statement query) gets ``RESET ALL`` from
    then on, with one warning in the log. asyncpg's own pool sends nothing
    at all to CockroachDB (its ``_detect_server_capabilities`` turns
    ``sql_reset`` off there).

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
# CockroachDB: cockroach logic test "discard" (DISCARD SEQUENCES / TEMP, CLOSE);
# RESET ALL alone for servers that reject the longer form.
CRDB_RESET = ("CLOSE ALL; RESET ALL; DISCARD SEQUENCES; DISCARD TEMP", "RESET ALL")

log = logging.getLogger(__name__)


def _rejected(err: BaseException) -> bool:
    """The server answered and refused the statement (not a connection problem).

    Which of the reset's statements a CockroachDB version refuses, and with
    which code (42601 syntax, 0A000 unsupported, 25001 not in a transaction
    block), is not known for every version, so any refusal falls back.
    """
    codes = sqlstates_of(err)
    return bool(codes) and not any(c[:2] in _CONNECTION_CLASSES for c in codes)


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
    """Runs the reset for one pool; remembers a server's simpler variant."""

    def __init__(self) -> None:
        self._crdb_variant = 0

    def statements(self, is_cockroachdb: bool) -> str:
        if is_cockroachdb:
            return CRDB_RESET[self._crdb_variant]
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
        while True:
            sql = self.statements(is_cockroachdb)
            try:
                await_only(driver.execute(sql))
                return
            except asyncpg.PostgresError as err:
                if (
                    is_cockroachdb
                    and self._crdb_variant + 1 < len(CRDB_RESET)
                    and _rejected(err)
                    and not driver.is_in_transaction()
                ):
                    log.warning(
                        "CockroachDB rejected the session reset %r (%s); using %r "
                        "from now on",
                        sql,
                        ",".join(sqlstates_of(err)),
                        CRDB_RESET[self._crdb_variant + 1],
                    )
                    self._crdb_variant += 1
                    continue
                raise

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
