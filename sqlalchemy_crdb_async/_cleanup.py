"""Cleanup that outlives a cancellation (internal; shared by retry and pool).

:func:`shielded` runs a cleanup coroutine so that a cancellation of the caller
does not interrupt it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["shielded"]

log = logging.getLogger("sqlalchemy_crdb_async.cleanup")

_background: set[asyncio.Future[Any]] = set()


async def shielded(awaitable: Awaitable[Any]) -> None:
    """Run cleanup to completion even if the caller is cancelled meanwhile.

    Errors of the cleanup are logged, not raised: they must not hide the error
    that made the cleanup necessary.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        _background.add(task)
        task.add_done_callback(_background.discard)
        raise
    except Exception:
        log.debug("cleanup after a failed attempt raised", exc_info=True)
