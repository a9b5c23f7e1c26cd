"""The fingerprint of a statement's result, for ``retrying_session`` (internal).

:func:`fingerprint` hashes a cursor's full, buffered result (column names, row
count, every row) with BLAKE2b, without consuming it; :mod:`.replay` compares
the fingerprints of a replay with those of the first run. :func:`short_sql`
shortens a statement for an error message.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPICursor

__all__ = ["fingerprint", "short_sql"]


def fingerprint(cursor: DBAPICursor) -> str:
    """A hash of a cursor's full, buffered result (without consuming it)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(cursor.rowcount).encode())
    description = cursor.description
    if description is not None:
        # SQLAlchemy's async adapters buffer the whole result in ``_rows``.
        rows = getattr(cursor, "_rows", None)
        if rows is None or getattr(cursor, "server_side", False):
            raise sa_exc.InvalidRequestError(
                "retrying_session(): this result is streamed (server-side cursor "
                "or a driver without buffered rows), so it cannot be "
                "fingerprinted for replay; drop stream_results or use "
                "run_transaction()."
            )
        digest.update(repr([column[0] for column in description]).encode())
        for row in rows:
            digest.update(repr(tuple(row)).encode())
            digest.update(b"\x00")
    return digest.hexdigest()


def short_sql(statement: str, limit: int = 200) -> str:
    """``statement`` on one line, at most ``limit`` characters."""
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
