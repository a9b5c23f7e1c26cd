"""Fixtures of the retry tests: ``db`` and ``target``.

``db`` is the per-test engine with the failure functions of
:mod:`tests.retry.support` installed. ``target`` is parametrized over the four
kinds of target the async helpers accept (the model is psycopg's
``pool_cls`` fixture): a test that takes it runs once per kind, with ids
``engine``, ``connection``, ``sessionmaker``, ``session``; narrow it with
``@pytest.mark.parametrize("target", [engine_target, ...], indirect=True)``
(the factories are in :mod:`tests.retry.support`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.retry.support import TARGETS, install

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    await install(engine)
    return engine


@pytest.fixture(params=TARGETS)
async def target(request: pytest.FixtureRequest, db: AsyncEngine) -> AsyncIterator[Any]:
    async with request.param(db) as made:
        yield made
