"""Helpers shared by the pool tests: plain URLs and waiting for the server."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL

#: How long a test waits for something asynchronous (a backend to exit, a
#: shielded cleanup to finish) before it fails; not a timing assertion.
SETTLE_S = 20.0


def plain_url(url: URL) -> str:
    """``postgresql://...`` for asyncpg itself, from a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after SETTLE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while not await predicate():
        if loop.time() > deadline:
            pytest.fail(f"gave up after {SETTLE_S} s waiting for {what}")
        await asyncio.sleep(0.05)
