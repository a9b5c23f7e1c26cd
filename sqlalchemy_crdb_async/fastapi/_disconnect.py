"""Watching a request for its client's disconnect, lazily (internal).

A client that goes away must stop the request's work: its statement cancelled
on the server, its transaction rolled back (tests/fastapi/test_disconnect.py).
ASGI says so only through ``receive()``: once the body is read, the next
message is ``http.disconnect``, when the client goes (uvicorn, hypercorn and
httpx's ``ASGITransport`` all hold that ``receive()`` open until then). Someone
has to await it, and that someone is a task.

A task per request is most of what the route used to cost a short request
(an anyio task group: a cancel scope, the task, the cancellation delivered
at the end and the wait for the task to end, about 100 us of client CPU, more
than a point read on the fast path). :class:`DisconnectWatch` starts no task
at first: it arms a timer (``loop.call_later``, a handle and no task) and
starts the watching task only when the request is still running
:data:`WATCH_AFTER_S` after it started. Requests answered sooner never pay
for a task; a request that runs longer, the one where a disconnect has
anything worth stopping (a lock wait, a slow statement, backoffs), is watched
from then on as before. What that gives up: a client that leaves in the first
:data:`WATCH_AFTER_S` of a request is noticed at that mark, not at once; the
request's statement is cancelled then, the same way. (Any watcher leaves
such a race: a client can leave just after COMMIT was sent.)

The watcher is a plain asyncio task, not an anyio task group: stopping it is
one ``Task.cancel()``, not awaited (nothing in it needs cleaning up; the loop
keeps it referenced until it ends). On ``http.disconnect`` it fires the
request's :class:`~sqlalchemy_crdb_async.retry._deadline.TaskCanceller`,
which cancels the request's task once, leaving asyncpg time to send its cancel
request to the server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from ..retry._deadline import TaskCanceller

__all__ = ["WATCH_AFTER_S", "DisconnectWatch"]

log = logging.getLogger("sqlalchemy_crdb_async.fastapi")

#: A request still running this long after it started is watched for its
#: client's disconnect (seconds); shorter requests are never watched.
WATCH_AFTER_S: Final = 0.05


class DisconnectWatch:
    """Fires ``gone`` when ``receive()`` says the client disconnected, watching
    from ``after_s`` after it is made until :meth:`stop`."""

    __slots__ = ("_gone", "_handle", "_receive", "_task", "started")

    def __init__(
        self,
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        gone: TaskCanceller,
        after_s: float | None = None,
    ) -> None:
        self._receive = receive
        self._gone = gone
        self._task: asyncio.Task[None] | None = None
        #: The watching task was started (the request ran past ``after_s``).
        self.started = False
        self._handle: asyncio.TimerHandle | None = (
            asyncio.get_running_loop().call_later(
                WATCH_AFTER_S if after_s is None else after_s, self._start
            )
        )

    def _start(self) -> None:
        self._handle = None
        self.started = True
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._gone.fire()
                    return
        except Exception:  # the server's receive() failed: nothing to watch
            log.debug("watching for a client disconnect failed", exc_info=True)

    def stop(self) -> None:
        """Stop watching (the request is answering); no await needed."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
