"""Shared fixtures: engines for each driver, on the per-module test database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sqlalchemy_crdb_async  # noqa: F401 - registers the dialects

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL


@pytest.fixture
async def engine(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    """An asyncpg engine on this module's database, disposed after the test."""
    eng = create_async_engine(crdb_url)
    try:
        yield eng
    finally:
        await eng.dispose()
