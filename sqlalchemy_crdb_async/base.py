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

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql.base import PGDialect
from typing_extensions import override

from .server import ServerFlavor, ServerInfo, parse_server_version

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import DBAPIConnection, IsolationLevel

__all__ = ["CockroachDBDialect"]

#: One round trip tells the server apart and gives both version numbers.
DETECT_SERVER_SQL = "SELECT version(), current_setting('server_version')"

# READ COMMITTED appeared in v23.2 (crdb-facts/session_vars.md section 2,
# https://cockroachlabs.com/docs/v23.2/read-committed).
_CRDB_READ_COMMITTED_SINCE = (23, 2, 0)


class CockroachDBDialect(PGDialect):
    """CockroachDB behaviour shared by every driver; see the module docstring."""

    name = "cockroachdb"
    supports_statement_cache = True

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
