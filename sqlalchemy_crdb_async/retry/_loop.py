"""The attempt loop every retry helper shares (internal).

:class:`AttemptLoop` is the decision procedure: it counts attempts, classifies
an error (:func:`.classify.classify`), raises :class:`.AmbiguousCommitError` or
:class:`.RetriesExhaustedError` when that is the verdict, and otherwise returns
the sleep, after reporting the retry (:mod:`.stats`). It never sleeps itself:
the async helpers sleep with ``asyncio.sleep``, the sync ones with
``time.sleep``, and only after the transaction is rolled back.
It also keeps the call's clock: ``started``, what is left of the deadline, the
bound of a cleanup now, and the :class:`._deadline.DeadlineTimer` the async
helpers arm around each attempt; :meth:`AttemptLoop.deadline_error` is the
error of an attempt the deadline cancelled.

Retry-error injection (``RetryPolicy(inject_retry_errors=True)``) turns on
CockroachDB's ``inject_retry_errors_enabled`` on the attempt's connection.
CockroachDB does not undo a SET on ROLLBACK
(https://github.com/cockroachdb/cockroach/issues/69396), and an injected
attempt never commits, so :func:`mark_injected` notes the connection and a
pool ``reset`` listener switches the variable off when that connection goes
back to the pool, whichever way the attempt ended (commit, error, cancel).
A connection the pool closes instead needs nothing.
A connect that failed (``Classification.connect_failed``) is retried like a
lost connection unless the loop was made with ``retry_failed_connects=False``
(the FastAPI route: a request answers 503 at once rather than hold its worker
while the database is down).
The async helpers also ask it for admission (:meth:`AttemptLoop.admit`, the
engine's gate in :mod:`._admission`) before each attempt, and hand the slot
back with the attempt's outcome (:meth:`AttemptLoop.release`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from ..errors import AmbiguousCommitError, DeadlineExceededError, RetriesExhaustedError
from ._admission import Admission, Slot, admission_for
from ._claims import Attempting, Claims, current_attempt
from ._deadline import DeadlineTimer, cleanup_bound_s, remaining_s
from ._fingerprint import short_sql
from .classify import Classification, ErrorKind, classify
from .policy import DEFAULT_POLICY, INJECTED_ATTEMPTS, RetryPolicy
from .stats import RetryEvent, counters_for, report_retry

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

__all__ = [
    "AttemptLoop",
    "inject_statement",
    "mark_injected",
    "replay_deadline_error",
    "switch_off_statement",
]

#: CockroachDB's session variable (tests/crdb_facts/session_vars.md section 3).
INJECT_VARIABLE = "inject_retry_errors_enabled"
#: ``connection.info`` key: the variable may be on for this connection.
_INJECTED_KEY = "sqlalchemy_crdb_async.retry_errors_injected"
#: Set on a pool once its ``reset`` listener is installed.
_SWITCH_OFF_INSTALLED = "_crdb_switch_off_listener"


class AttemptLoop:
    """Counts attempts and decides, per error, whether and how long to wait."""

    def __init__(
        self,
        policy: RetryPolicy | None,
        engine: Engine | None,
        *,
        idempotent: bool,
        api: str,
        retry_failed_connects: bool = True,
    ) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"{api}(): policy must be a RetryPolicy, got {type(policy).__name__}"
            )
        self.policy = policy or DEFAULT_POLICY
        self.engine = engine
        self.idempotent = bool(idempotent)
        self.api = api
        #: False: a connect that failed ends the loop (the error is re-raised).
        self.retry_failed_connects = retry_failed_connects
        self.counters = counters_for(engine)
        self.number = 0
        #: ``time.monotonic()`` at the call: the deadline counts from here.
        self.started = time.monotonic()
        self.slot: Slot | None = None
        #: An attempt is running: admitted and not yet released.
        self.attempt_open = False
        #: The keys the running attempt claimed (:mod:`._claims`), if any.
        self.claims: Claims | None = None
        self._outer_attempt: Attempting | None = None
        self._lent: Admission | None = None
        self._timer: DeadlineTimer | None = None

    def restart_clock(self, started: float) -> None:
        """Count the deadline from ``started`` (a caller that began earlier)."""
        self.started = started
        self._timer = None

    @property
    def timer(self) -> DeadlineTimer:
        """Cancels the attempt at the deadline while armed (:mod:`._deadline`);
        made on first use (the FastAPI route has its own)."""
        timer = self._timer
        if timer is None:
            timer = self._timer = DeadlineTimer(self.policy, self.started)
        return timer

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (None: no deadline; may be < 0)."""
        return remaining_s(self.policy, self.started)

    def cleanup_bound_s(self) -> float:
        """How long a cleanup may take now and still keep the deadline."""
        return cleanup_bound_s(self.policy, self.started)

    def deadline_error(
        self, where: str, error: BaseException | None = None
    ) -> DeadlineExceededError:
        """The error for an attempt cancelled at the deadline; ``where`` says
        what the attempt was doing (a sentence fragment)."""
        self.counters.add("give_ups")
        self.counters.add("deadline_cancels")
        elapsed_s = time.monotonic() - self.started
        made = DeadlineExceededError(
            f"{self.api}(): RetryPolicy.deadline_s={self.policy.deadline_s} passed "
            f"{elapsed_s:.3f} s after the call, during attempt {self.number}, "
            f"{where}. The attempt was cancelled: a statement it was running was "
            "cancelled on the server (asyncpg's cancel request) and its "
            "transaction rolled back or its connection closed, so it holds no "
            "lock and took none afterwards. Raise deadline_s if the work needs "
            "longer, or find what it waited for (a row lock held by another "
            "transaction, a slow statement, an unanswered network).",
            error,
            max(self.number, 0),
        )
        made.during_attempt = True
        return made

    async def admit(self) -> None:
        """Open the attempt (:func:`.claim_keys` finds it from here) and wait
        for the engine's admission gate (no-op when off or held)."""
        if not self.attempt_open:
            self.attempt_open = True
            outer = current_attempt.get()
            if outer is not self:
                self._outer_attempt = outer
                current_attempt.set(self)
        if not self.policy.admission or self.slot is not None or self.engine is None:
            return
        gate = admission_for(self.engine)
        slot = gate.try_acquire()  # the common case: no coroutine, no clock
        if slot is not None:
            self.slot = slot
            return
        deadline_s = self.policy.deadline_s
        remaining_s = None
        if deadline_s is not None:
            remaining_s = deadline_s - (time.monotonic() - self.started)
        try:
            self.slot = await gate.acquire(timeout_s=remaining_s, retry=self.number > 1)
        except asyncio.TimeoutError:
            self.counters.add("give_ups")
            raise DeadlineExceededError(
                f"{self.api}(): gave up after {max(self.number - 1, 0)} attempts: "
                f"RetryPolicy.deadline_s={deadline_s} passed while waiting for "
                f"admission ({gate.queued} waiting, limit {gate.current_limit}). "
                "Raise deadline_s, or run fewer transactions on these rows at once.",
                None,
                max(self.number - 1, 0),
                "deadline_s",
            ) from None

    def release(self, error: BaseException | None) -> None:
        """End the attempt: give its claimed keys back and hand the admission
        slot back with the attempt's outcome."""
        claims, self.claims = self.claims, None
        if claims is not None:
            claims.release()
        if self.attempt_open:
            self.attempt_open = False
            if current_attempt.get() is self:
                current_attempt.set(self._outer_attempt)
            self._outer_attempt = None
        self._lent = None
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release(error, retried=self.number > 1)

    def step_aside(self) -> None:
        """Lend the admission slot, reporting nothing, while the attempt waits
        for its keys (:mod:`._claims`); :meth:`step_back` retakes one."""
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.step_aside()
            self._lent = slot.gate

    def step_back(self) -> None:
        """Retake the slot lent by :meth:`step_aside`, at once."""
        gate, self._lent = self._lent, None
        if gate is not None:
            self.slot = gate.reenter()

    @property
    def nested(self) -> bool:
        """This attempt runs inside another attempt of the same task."""
        outer = self._outer_attempt
        return outer is not None and outer.attempt_open

    def start(self) -> int:
        """Count a new attempt; returns its number (1 for the first)."""
        self.number += 1
        self.counters.add("attempts")
        return self.number

    def committed(self) -> None:
        self.counters.add("commits")

    @property
    def inject_now(self) -> bool:
        """True while this attempt should run with injected retry errors."""
        return self.policy.inject_retry_errors and self.number <= INJECTED_ATTEMPTS

    def next_sleep(
        self,
        error: BaseException,
        *,
        commit_sent: bool,
        disconnect: bool | None = None,
        replay: bool = False,
    ) -> tuple[float, Classification] | None:
        """The sleep before the next attempt, or None: re-raise ``error`` as is.

        Raises AmbiguousCommitError or RetriesExhaustedError (from ``error``)
        when that is the verdict.
        """
        verdict = classify(error, commit_sent=commit_sent, disconnect=disconnect)
        if verdict.kind is ErrorKind.RAISE:
            return None
        if verdict.connect_failed and not self.retry_failed_connects:
            return None
        if verdict.kind is ErrorKind.AMBIGUOUS:
            self.counters.add("ambiguous")
            if not self.idempotent:
                raise AmbiguousCommitError(
                    f"{self.api}(): the connection was lost or the server answered "
                    f"'result is ambiguous' (SQLSTATE {verdict.sqlstate}) after "
                    "COMMIT was sent; the transaction may or may not have "
                    "committed. Check the data, or pass idempotent=True if running "
                    "the work twice is harmless.",
                    error,
                ) from error
        policy = self.policy
        if self.number >= policy.max_attempts:
            self.counters.add("give_ups")
            raise RetriesExhaustedError(
                f"{self.api}(): gave up after {self.number} attempts in "
                f"{time.monotonic() - self.started:.3f} s: hit "
                f"RetryPolicy.max_attempts={policy.max_attempts} before "
                f"deadline_s={policy.deadline_s}. Raise max_attempts (the deadline "
                "still bounds the time). The last error had SQLSTATE "
                f"{verdict.sqlstate}: {error}",
                error,
                self.number,
                "max_attempts",
            ) from error
        sleep_s = policy.backoff_s(self.number)
        elapsed_s = time.monotonic() - self.started
        if policy.deadline_s is not None and elapsed_s + sleep_s > policy.deadline_s:
            self.counters.add("give_ups")
            raise DeadlineExceededError(
                f"{self.api}(): gave up after {self.number} attempts in "
                f"{elapsed_s:.3f} s: the next retry would pass "
                f"RetryPolicy.deadline_s={policy.deadline_s}. Raise deadline_s, or "
                "make the transaction shorter or touch fewer hot rows. The last "
                f"error had SQLSTATE {verdict.sqlstate}: {error}",
                error,
                self.number,
                "deadline_s",
            ) from error
        self.counters.retry(verdict, sleep_s, replay=replay)
        event = RetryEvent(
            self.number, verdict.sqlstate, verdict.reason, sleep_s, error, replay
        )
        report_retry(event, self.api)
        if policy.on_retry is not None:
            policy.on_retry(event)
        return sleep_s, verdict

    def clear_statement_cache(self) -> None:
        """Make the driver re-prepare statements (after a cached-plan error)."""
        # SQLAlchemy's asyncpg dialect keeps a timestamp; bumping it makes every
        # connection drop its prepared statements before the next use.
        dialect = getattr(self.engine, "dialect", None)
        invalidate = getattr(dialect, "_invalidate_schema_cache", None)
        if callable(invalidate):
            invalidate()


def inject_statement(loop: AttemptLoop) -> str | None:
    """The SET for CockroachDB's retry-error injection on this attempt, if any."""
    if not loop.policy.inject_retry_errors:
        return None
    assert loop.engine is not None  # only attempts with a connection inject
    dialect = loop.engine.dialect
    if not _injection_supported(dialect):
        raise sa_exc.ArgumentError(
            "RetryPolicy(inject_retry_errors=True) needs CockroachDB: the session "
            "variable inject_retry_errors_enabled does not exist on "
            f"{getattr(dialect, 'server_info', None) or 'this server'}."
        )
    # SET statements are never injected (``inject_retry_errors_enabled`` in
    # https://www.cockroachlabs.com/docs/v25.2/set-vars).
    return f"SET {INJECT_VARIABLE} = {'true' if loop.inject_now else 'false'}"


def _injection_supported(dialect: object) -> bool:
    return bool(getattr(dialect, "is_cockroachdb", False))


def switch_off_statement() -> str:
    """The SET that turns retry-error injection off again."""
    return f"SET {INJECT_VARIABLE} = false"


def mark_injected(connection: Connection, on: bool) -> None:
    """Note (``on``) or clear the injection flag of a sync ``Connection``."""
    if not on:
        connection.info.pop(_INJECTED_KEY, None)
        return
    connection.info[_INJECTED_KEY] = True
    engine = connection.engine
    # Marked on the pool, not asked of event.contains(), which keys a target
    # by id() (see replay._install).
    pool = engine.pool
    if not vars(pool).get(_SWITCH_OFF_INSTALLED):
        event.listen(engine, "reset", _switch_off_on_return)
        setattr(pool, _SWITCH_OFF_INSTALLED, True)


def _switch_off_on_return(
    dbapi_connection: DBAPIConnection,
    record: ConnectionPoolEntry,
    reset_state: PoolResetState,
) -> None:
    """Pool ``reset`` listener: the variable is off before the pool keeps it.

    Runs before the pool's own rollback; a failure here makes SQLAlchemy
    discard the connection, which is as good.
    """
    if record is None or not record.info.pop(_INJECTED_KEY, False):
        return
    if reset_state.terminate_only or not reset_state.asyncio_safe:
        return  # the connection is being closed, not kept
    dbapi_connection.rollback()
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(switch_off_statement())
    finally:
        cursor.close()
    # the SET sticks on CockroachDB either way
    # (https://github.com/cockroachdb/cockroach/issues/69396); commit
    # makes it stick on any server
    dbapi_connection.commit()


def replay_deadline_error(
    loop: AttemptLoop, running: str | None, locked_reads: int
) -> Exception:
    """What a ``retrying_session`` block gets when the deadline cancelled it:
    ``running`` is the statement in flight (None: the block awaited something
    else), ``locked_reads`` the reads lock_on_read made FOR UPDATE."""
    if running == "COMMIT" and not loop.idempotent:
        loop.counters.add("ambiguous")
        return AmbiguousCommitError(
            f"retrying_session(): RetryPolicy.deadline_s={loop.policy.deadline_s} "
            "passed while COMMIT was in flight; it was cancelled, so the "
            "transaction may or may not have committed. Check the data, or pass "
            "idempotent=True if running the work twice is harmless."
        )
    if running is not None:
        return loop.deadline_error(f"while the statement {short_sql(running)!r} ran")
    if locked_reads:
        return loop.deadline_error(
            "while the block awaited something other than this session (no "
            "statement of the session was running) and the session held the row "
            f"locks of {locked_reads} read(s) that lock_on_read made "
            "FOR UPDATE. If the block awaited another connection that writes a "
            "row this session read, that connection was waiting for this "
            "session's own row lock: a self-wait no server detects. Write such "
            "rows through this session, or pass lock_on_read=False"
        )
    return loop.deadline_error(
        "while the block awaited something other than this session (no "
        "statement of the session was running)"
    )
