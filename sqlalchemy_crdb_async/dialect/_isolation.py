"""CockroachDB's weaker isolation levels, checked where the server upgrades them.

On CockroachDB ``READ COMMITTED`` (v23.2+) and ``REPEATABLE READ`` (v24.3+)
are each behind a cluster setting: ``sql.txn.read_committed_isolation.enabled``
(default false in v23.2, true from v24.1) and
``sql.txn.repeatable_read_isolation.enabled`` (default false through v26.2).
With the setting off the server runs the transaction at a stronger level,
READ COMMITTED as REPEATABLE READ (if that one is on) or SERIALIZABLE,
REPEATABLE READ as SERIALIZABLE, and tells the client nothing: no notice, no
error (tests/crdb_facts/settings.md sections 1 and 3;
https://github.com/cockroachdb/cockroach/pull/129571).

So the first time a connection of an engine is given one of these levels (an
engine-wide ``isolation_level``, or ``execution_options(isolation_level=...)``),
:func:`check_level` asks the server which level such a transaction really gets:
it opens one at that level and reads ``SHOW transaction_isolation``, which
reports the transaction's effective level (cockroach ``pkg/sql/vars.go``,
``transaction_isolation``'s ``Get``; tests/crdb_facts/settings.md section 3,
recipe 1), then rolls it back. When that level is stronger, one
:class:`~sqlalchemy_crdb_async.IsolationLevelUpgradeWarning` names the level
given, the level run and the cluster setting to turn on. The answer is kept
per engine (the dialect) and level: a setting changed later is not seen until
a new engine is made.

Why not read the cluster setting: ``SHOW CLUSTER SETTING`` needs the admin
role or the ``VIEWCLUSTERSETTING`` / ``MODIFYCLUSTERSETTING`` privilege, and
refuses others with 42501 (tests/crdb_facts/settings.md section 5); most
application users have none. ``SHOW transaction_isolation`` needs nothing, and
it also sees an upgrade for any other reason. If the check itself fails, the
warning says the level could not be verified and names the setting; the
connection is used as it is.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

from ..errors import IsolationLevelUpgradeWarning
from ._dbapi import fetch_row

__all__ = ["CHECK_SQL", "LEVEL_SETTINGS", "check_level"]

#: The effective isolation of the current transaction (any user may read it).
CHECK_SQL = "SHOW transaction_isolation"

#: Each weaker level and the cluster setting that lets CockroachDB run it
#: (tests/crdb_facts/settings.md section 1).
LEVEL_SETTINGS = {
    "READ COMMITTED": "sql.txn.read_committed_isolation.enabled",
    "REPEATABLE READ": "sql.txn.repeatable_read_isolation.enabled",
}


def check_level(dbapi_connection: Any, level: str) -> str | None:
    """The level a ``level`` transaction really runs at; warns if stronger.

    ``dbapi_connection`` has just been given ``level`` and has no transaction
    open: the driver's own ``BEGIN`` opens one at ``level``. Returns the
    effective level upper-case, or None when it could not be read (warned).
    """
    setting = LEVEL_SETTINGS[level]
    try:
        row = fetch_row(dbapi_connection, CHECK_SQL)
    except Exception as err:  # a DBAPI error of any driver; cancellation passes
        _rollback_quietly(dbapi_connection)
        warnings.warn(
            f"Could not verify that CockroachDB runs {level} transactions at "
            f"{level} ({CHECK_SQL} failed: {err}). With the cluster setting "
            f"{setting} off it runs them as SERIALIZABLE without telling the "
            "client.",
            IsolationLevelUpgradeWarning,
            stacklevel=2,
        )
        return None
    effective = str(row[0]).upper() if row else ""
    if effective != level:
        warnings.warn(
            f"CockroachDB runs {level} transactions as {effective or '?'} on this "
            f"cluster: the cluster setting {setting} is off, and the server "
            f"upgrades the level without telling the client. Turn it on (SET "
            f"CLUSTER SETTING {setting} = true, by a user with the "
            "MODIFYCLUSTERSETTING or MODIFYSQLCLUSTERSETTING privilege) or ask "
            f"for {effective or 'SERIALIZABLE'}.",
            IsolationLevelUpgradeWarning,
            stacklevel=2,
        )
    return effective


def _rollback_quietly(dbapi_connection: Any) -> None:
    # the check's own error is the one to report
    with contextlib.suppress(Exception):
        dbapi_connection.rollback()
