"""DisconnectWatch: no task for a short request, a watcher past the mark.

The ``receive`` here is an ASGI receive channel the test feeds itself (an
``asyncio.Queue``), as a server's would deliver the messages; the end to end
case (a real uvicorn, a client dropping its socket) is test_disconnect.py.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from sqlalchemy_crdb_async.fastapi import _disconnect
from sqlalchemy_crdb_async.fastapi._disconnect import DisconnectWatch
from sqlalchemy_crdb_async.retry._deadline import TaskCanceller

from ..cancelling import until


class Channel:
    """An ASGI ``receive()`` fed by the test, counting its calls."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.calls = 0

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        return await self.messages.get()


async def test_a_request_answered_before_the_mark_starts_no_task() -> None:
    channel = Channel()
    gone = TaskCanceller("gone")
    gone.bind()
    before = len(asyncio.all_tasks())
    watch = DisconnectWatch(channel.receive, gone, after_s=3600.0)
    await asyncio.sleep(0)
    watch.stop()
    assert not watch.started
    assert channel.calls == 0
    assert len(asyncio.all_tasks()) == before
    assert gone.disarm() is False


async def test_past_the_mark_a_disconnect_cancels_the_request_once() -> None:
    channel = Channel()
    gone = TaskCanceller("gone")
    held = asyncio.Event()

    async def request() -> str:
        gone.bind()
        watch = DisconnectWatch(channel.receive, gone, after_s=0.0)
        try:
            held.set()
            await asyncio.Event().wait()  # the endpoint, waiting for ever
        except asyncio.CancelledError:
            assert gone.fired == 1
            assert gone.disarm() is True  # the cancellation was the watch's
            return "cancelled by the disconnect"
        finally:
            watch.stop()
        return "not cancelled"

    task = asyncio.create_task(request())
    await held.wait()

    async def watching() -> bool:
        return channel.calls == 1

    await until(watching, "the watcher to call receive()")
    # A body chunk first (a request whose body the endpoint did not read):
    # the watcher reads on until the disconnect.
    await channel.messages.put(
        {"type": "http.request", "body": b"", "more_body": False}
    )
    await channel.messages.put({"type": "http.disconnect"})
    assert await asyncio.wait_for(task, 10) == "cancelled by the disconnect"


async def test_stop_cancels_a_started_watcher() -> None:
    channel = Channel()
    gone = TaskCanceller("gone")
    gone.bind()
    watch = DisconnectWatch(channel.receive, gone, after_s=0.0)

    async def watching() -> bool:
        return channel.calls == 1

    await until(watching, "the watcher to call receive()")
    watcher = watch._task
    assert watcher is not None
    watch.stop()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert gone.fired == 0


async def test_a_failing_receive_ends_the_watcher_quietly() -> None:
    gone = TaskCanceller("gone")
    gone.bind()
    failed = asyncio.Event()

    async def receive() -> dict[str, Any]:
        failed.set()
        raise OSError("the server's channel broke")

    watch = DisconnectWatch(receive, gone, after_s=0.0)
    await asyncio.wait_for(failed.wait(), 10)
    watcher = watch._task
    assert watcher is not None
    await asyncio.wait_for(watcher, 10)  # ended, no error left unretrieved
    watch.stop()
    assert gone.fired == 0


async def test_the_mark_is_the_module_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_disconnect, "WATCH_AFTER_S", 0.0)
    channel = Channel()
    gone = TaskCanceller("gone")
    gone.bind()
    watch = DisconnectWatch(channel.receive, gone)

    async def watching() -> bool:
        return watch.started and channel.calls == 1

    try:
        await until(watching, "the watcher to start at a mark of 0 s")
    finally:
        watch.stop()


def test_the_readme_states_the_mark() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    stated = re.findall(r"only from (\d+) ms into a request", text)
    assert stated, "README no longer says when the disconnect watch starts"
    assert {float(ms) for ms in stated} == {_disconnect.WATCH_AFTER_S * 1000}
