"""One query on a raw DBAPI connection, before SQLAlchemy's own machinery runs.

Server detection (:meth:`.base.CockroachDBDialect._detect_on`) and the
isolation-level check (:mod:`._isolation`) run on the driver's connection
itself, from hooks SQLAlchemy calls before a ``Connection`` exists.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fetch_row"]


def fetch_row(dbapi_connection: Any, sql: str) -> Any:
    """The first row of ``sql``; the transaction the driver may have opened
    for it is rolled back, so none is left open."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
    finally:
        cursor.close()
    dbapi_connection.rollback()
    return row
