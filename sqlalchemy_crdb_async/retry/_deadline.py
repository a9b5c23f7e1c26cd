"""The deadline of a retry call: wall-clock from entry to return (internal).

``RetryPolicy.deadline_s`` bounds the whole call of a retry helper: queueing
for admission, connecting, every attempt, every backoff and the cleanup after
the last attempt. Two parts enforce it.

Between attempts, :class:`.AttemptLoop` does not start a retry whose backoff
would end past the deadline, and bounds the admission wait by what is left.

During an attempt, a :class:`DeadlineTimer` is armed around it: when the
deadline passes, it cancels the task running the attempt
(``Task.cancel()``, so whatever the attempt awaits, a statement, the
connect, the block's own ``await`` on something else, stops there). The
server side follows:

- asyncpg, cancelled while a statement runs, sends PostgreSQL's
  CancelRequest on a new connection (asyncpg ``connection.py``
  ``_cancel_current_command``). CockroachDB honours it since v22.1, older
  than every release the dialect supports
  (https://github.com/cockroachdb/cockroach/pull/67501, documented by
  https://github.com/cockroachdb/docs/pull/13832; the statement ends with
  "query execution canceled", 57014, tests/crdb_facts/errors_batch3.json
  ``57014_query_canceled``); that PR covers dedicated clusters and names
  multi-tenant (serverless) clusters as later work, and CockroachDB
  rate-limits failed cancel requests per node. SQLAlchemy then invalidates
  the connection (the cancellation is an "exit exception"), which closes
  the socket, so the server ends the session and its transaction.
- When no statement was running (the block awaited something else), the
  attempt's cleanup rolls the transaction back: one round trip.
- That cleanup (:func:`sqlalchemy_crdb_async._cleanup.run_cleanup`) gets
  :func:`cleanup_bound_s`: what is left of the deadline plus
  :data:`DEADLINE_CLEANUP_S`, at most the usual bound. A cleanup that does
  not finish in time (a silent network) has its connection closed by force.

So a call returns within ``deadline_s`` plus :data:`DEADLINE_CLEANUP_S` (plus
the force-close grace when the network is silent), with its attempt's lock
waits and statements cancelled on the server. What cannot be bounded from the
client: a server that never receives the cancel request (a network that
drops everything) keeps its statement running until it ends or the server
notices the closed connection; a server-side ``statement_timeout`` is the
backstop for that case.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Final

from .._cleanup import CLEANUP_TIMEOUT_S

if TYPE_CHECKING:
    from .policy import RetryPolicy

__all__ = [
    "DEADLINE_CLEANUP_S",
    "DeadlineTimer",
    "TaskCanceller",
    "cleanup_bound_s",
    "remaining_s",
    "statement_timeout_sql",
]

#: After the deadline passed, how long the attempt's rollback and close may
#: take before the connection is closed by force. One round trip on a healthy
#: network.
DEADLINE_CLEANUP_S: Final = 0.5

#: A :class:`DeadlineTimer` cancels a second time this long after the first,
#: time for asyncpg's CancelRequest (a new connection) to be sent first...
FIRST_RECANCEL_S: Final = 0.5
#: ... then again this often until disarmed.
RECANCEL_S: Final = 0.2
#: The message of the cancellation a :class:`DeadlineTimer` delivers.
DEADLINE_MESSAGE: Final = "sqlalchemy_crdb_async: RetryPolicy.deadline_s passed"


def remaining_s(policy: RetryPolicy, started: float) -> float | None:
    """Seconds left before the deadline of a call started at ``started``
    (``time.monotonic()``); None without a deadline. May be negative."""
    if policy.deadline_s is None:
        return None
    return policy.deadline_s - (time.monotonic() - started)


def cleanup_bound_s(policy: RetryPolicy, started: float) -> float:
    """The bound of a cleanup now: what is left plus :data:`DEADLINE_CLEANUP_S`,
    at most :data:`CLEANUP_TIMEOUT_S`."""
    left = remaining_s(policy, started)
    if left is None:
        return CLEANUP_TIMEOUT_S
    return min(CLEANUP_TIMEOUT_S, max(0.0, left) + DEADLINE_CLEANUP_S)


def statement_timeout_sql(
    policy: RetryPolicy, started: float, dialect: object
) -> str | None:
    """``SET LOCAL statement_timeout = <ms left>`` for the sync helper's
    attempt, or None (no deadline, or a server without ``SET LOCAL``).

    PostgreSQL has both forever. CockroachDB has ``statement_timeout`` in
    every release (an int is milliseconds; exceeded: 57014 "query execution
    canceled due to statement timeout"; tests/crdb_facts/settings.md section
    2) and ``SET LOCAL`` since v21.2
    (https://www.cockroachlabs.com/docs/v21.2/set-vars, "New in v21.2").
    ``transaction_timeout`` is not used: PostgreSQL 17 ends the whole session
    when it fires, and whether a ``SET LOCAL`` of it inside a running
    CockroachDB transaction arms its timer is not in the facts we have.
    """
    left = remaining_s(policy, started)
    if left is None:
        return None
    if getattr(dialect, "is_cockroachdb", False):
        at_least = getattr(dialect, "crdb_at_least", None)
        if not callable(at_least) or not at_least(21, 2):
            return None
    return f"SET LOCAL statement_timeout = {max(1, math.ceil(left * 1000))}"


class TaskCanceller:
    """Cancels one task with ``Task.cancel()``; with ``recancel_after_s``, again.

    The way to end an attempt so that the server's statement ends too: one
    ``CancelledError`` lets asyncpg send its CancelRequest, on a new
    connection, from a task of its own. SQLAlchemy's asyncpg adapter then
    invalidates the connection with a graceful close that first waits for that
    CancelRequest to be sent (up to 2 s) and closes the socket at once only
    when cancelled again (``AsyncAdapt_asyncpg_connection.terminate``);
    closing at once also cancels a CancelRequest not yet sent (asyncpg
    ``Connection._clean_tasks``), leaving the statement running on the server.
    An anyio cancel scope re-delivers its cancellation on every loop turn, so
    it always lost that race.

    So: with ``recancel_after_s=None`` (a client disconnect, where no bound is
    promised) it cancels once. With a number (the deadline, where a silent
    network must not hold the call for SQLAlchemy's 2 s) it cancels again that
    long after the first, time enough for a CancelRequest on a loaded
    machine, then every :data:`RECANCEL_S`. The cleanups in between are written
    to run through repeated cancellation (:mod:`sqlalchemy_crdb_async._cleanup`).

    ``fire()`` starts it; ``disarm()`` stops it and returns True when it fired
    and the task's cancellation is its own alone (a cancellation from
    elsewhere, also pending, is left to propagate). On Python 3.10, which
    cannot tell the two apart, a fired canceller counts as the cause.
    """

    def __init__(self, message: str, recancel_after_s: float | None = None) -> None:
        self.message = message
        self.recancel_after_s = recancel_after_s
        #: How many cancellations it delivered since it was last disarmed.
        self.fired = 0
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def bind(self) -> bool:
        """Target the current task; False when there is none."""
        self.fired = 0
        self._task = asyncio.current_task()
        return self._task is not None

    def fire(self) -> None:
        """Cancel the task now (and again later, see the class docstring)."""
        self._handle = None
        task = self._task
        if task is None or task.done():
            return
        self.fired += 1
        task.cancel(self.message)
        if self.recancel_after_s is None:
            return
        later = self.recancel_after_s if self.fired == 1 else RECANCEL_S
        self._handle = asyncio.get_running_loop().call_later(later, self.fire)

    def disarm(self) -> bool:
        """Stop; True when it fired and the cancellation is its own."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        task, self._task = self._task, None
        fired, self.fired = self.fired, 0
        if not fired or task is None:
            return False
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is None:
            return True
        left = 0
        for _ in range(fired):
            left = uncancel()
        return bool(left == 0)


class DeadlineTimer(TaskCanceller):
    """A :class:`TaskCanceller` that fires when the deadline passes, while armed.

    ``arm()`` in the task to cancel; ``disarm()`` returns True when the timer
    fired and the task's cancellation is the timer's alone (so the caller
    turns the ``CancelledError`` into :class:`.DeadlineExceededError`).
    """

    def __init__(self, policy: RetryPolicy, started: float) -> None:
        super().__init__(DEADLINE_MESSAGE, recancel_after_s=FIRST_RECANCEL_S)
        self.policy = policy
        self.started = started

    def arm(self) -> None:
        left = remaining_s(self.policy, self.started)
        if left is None or self._handle is not None:
            return
        if not self.bind():  # pragma: no cover - always called in a task
            return
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(max(0.0, left), self.fire)
