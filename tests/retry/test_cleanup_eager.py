"""Cleanups start eagerly (sqlalchemy_crdb_async._cleanup): one that needs no
wait completes in place, with no task and no turn of the event loop; one that
waits continues as a task from where it stopped, values and errors passed
through, its context variables its own. The bound and the shield under
cancellation are tested in test_cancellation.py."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import anyio
import pytest

from sqlalchemy_crdb_async import _cleanup
from tests.cancelling import BACKENDS, run

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="Python 3.10 has no create_task(context=): every cleanup is a task there",
)

_var: contextvars.ContextVar[str] = contextvars.ContextVar("cleanup_test", default="")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cleanup_that_never_waits_completes_in_place(
    backend: dict[str, Any],
) -> None:
    ran: list[str] = []
    tasks_seen: list[int] = []

    async def cleanup() -> None:
        tasks_seen.append(len(asyncio.all_tasks()))
        ran.append("cleanup")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = len(asyncio.all_tasks())
        loop.call_soon(ran.append, "next loop turn")
        ok = await _cleanup.run_cleanup(cleanup(), None, "quick close")
        # Completed before the event loop turned once: no task was made.
        assert ok is True
        assert ran == ["cleanup"]
        assert tasks_seen == [before]
        await anyio.lowlevel.checkpoint()
        assert ran == ["cleanup", "next loop turn"]

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cleanup_that_waits_continues_with_its_values_and_errors(
    backend: dict[str, Any],
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[int] = loop.create_future()
        second: asyncio.Future[int] = loop.create_future()
        steps: list[str] = []

        async def cleanup() -> int:
            steps.append("first step")
            got = await first
            steps.append(f"got {got}")
            try:
                await second
            except LookupError as error:
                steps.append(f"caught {error}")
            await asyncio.sleep(0)  # a bare yield, passed through as well
            return got + 1

        started = _cleanup._start(loop, cleanup())
        assert steps == ["first step"]  # ran in place, up to its first wait
        assert not started.done()
        loop.call_soon(first.set_result, 41)
        loop.call_later(0.01, second.set_exception, LookupError("no row"))
        assert await started == 42
        assert steps == ["first step", "got 41", "caught no row"]

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cleanup_cancelled_while_waiting_sees_the_cancellation(
    backend: dict[str, Any],
) -> None:
    """The bound cancels a stuck cleanup's task: the cancellation reaches the
    coroutine where it waits, and its ``finally`` runs."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        never: asyncio.Future[None] = loop.create_future()
        finished: list[str] = []

        async def cleanup() -> None:
            try:
                await never
            finally:
                finished.append("finally")

        started = _cleanup._start(loop, cleanup())
        assert isinstance(started, asyncio.Task)
        await asyncio.sleep(0)
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
        assert finished == ["finally"]
        assert never.cancelled()

    run(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cleanups_context_variables_stay_its_own(backend: dict[str, Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def cleanup() -> str:
            _var.set("set in the first step")
            await asyncio.sleep(0)
            seen = _var.get()
            _var.set("set later")
            return seen

        _var.set("the caller's")
        assert await _cleanup._start(loop, cleanup()) == "set in the first step"
        assert _var.get() == "the caller's"

        async def quick() -> None:
            _var.set("set by a cleanup that never waits")

        assert await _cleanup.run_cleanup(quick(), None, "quick") is True
        assert _var.get() == "the caller's"

    run(backend, main)


def test_a_cleanup_cancelled_in_its_first_step_counts_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forced: list[bool] = []

    async def cleanup() -> None:
        raise asyncio.CancelledError  # what a cleanup that gave up raises

    async def main() -> bool:
        return await _cleanup.run_cleanup(cleanup(), lambda: forced.append(True), "t")

    assert anyio.run(main) is False
    assert forced == [True]
