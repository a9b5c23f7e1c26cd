"""Shared fixtures: engines for each driver, on the per-module test database."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sqlalchemy_crdb_async  # noqa: F401 - registers the dialects

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlalchemy.engine import URL


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="run the reliability suite's fault and load phases for minutes",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    # Move everything imported so far out of the collector's reach, so the
    # per-test collection below scans only what tests create (ms, not 0.3 s).
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Leaked sockets and connections warn when collected; collecting after every
    test makes such a warning (an error here) fail the test that leaked."""
    yield
    gc.collect()


@pytest.fixture
async def engine(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    """An asyncpg engine on this module's database, disposed after the test."""
    eng = create_async_engine(crdb_url)
    try:
        yield eng
    finally:
        await eng.dispose()
