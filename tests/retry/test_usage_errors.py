"""What help() shows and what a mix-up of the helper forms says.

``retrying()`` is an async iterator of attempts and ``retrying_session()`` an
async context manager; the annotations say so, and using one in the other's
form raises a TypeError that names the right form.
"""

from __future__ import annotations

import inspect
import pydoc
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sqlalchemy_crdb_async import retrying, retrying_session, run_transaction, sync


def test_the_annotations_say_what_each_helper_returns() -> None:
    assert inspect.signature(retrying).return_annotation == "AsyncIterator[Attempt]"
    assert (
        inspect.signature(retrying_session).return_annotation
        == "AbstractAsyncContextManager[AsyncSession]"
    )
    for helper in (retrying, run_transaction):
        assert inspect.signature(helper).parameters["target"].annotation == (
            "RetryTarget"
        )


async def test_the_objects_are_what_the_annotations_say(engine: AsyncEngine) -> None:
    assert isinstance(retrying(engine), AsyncIterator)
    context = retrying_session(engine)
    assert isinstance(context, AbstractAsyncContextManager)
    async with context as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_async_with_on_retrying_names_the_loop_form(engine: AsyncEngine) -> None:
    with pytest.raises(TypeError, match=r"async for attempt in retrying\(target\)"):
        async with retrying(engine):  # type: ignore[attr-defined]
            pass


@pytest.mark.parametrize("maker", [False, True], ids=["engine", "sessionmaker"])
async def test_async_for_on_retrying_session_names_the_with_form(
    engine: AsyncEngine, maker: bool
) -> None:
    target = async_sessionmaker(engine) if maker else engine
    with pytest.raises(TypeError, match=r"async with retrying_session\(Session\)"):
        async for _ in retrying_session(target):  # type: ignore[attr-defined]
            pass


def test_help_of_sync_run_transaction_shows_readable_defaults() -> None:
    page = pydoc.render_doc(sync.run_transaction, renderer=pydoc.plaintext)
    signature = page.splitlines()[2]
    assert re.search(r"max_retries\b[^,]*= <not given>", signature), signature
    assert re.search(r"max_backoff\b[^,]*= <not given>", signature), signature
    assert "object at 0x" not in page
