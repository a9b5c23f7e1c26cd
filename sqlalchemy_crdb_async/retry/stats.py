"""What the retry helpers report: counters per engine, a log line, a span event.

Every retry helper (:mod:`.retry`, :mod:`.replay`, :mod:`.sync`) counts what it
does per engine; :func:`retry_stats` returns a snapshot::

    stats = retry_stats(engine)
    print(stats.retries_per_commit, stats.retries_by_reason)

Each retry is also

- logged at DEBUG on the ``sqlalchemy_crdb_async.retry`` logger, with the
  attempt, SQLSTATE, CockroachDB reason code and the chosen sleep;
- added as an event named ``db.transaction.retry`` to the current OpenTelemetry
  span, when ``opentelemetry-api`` is installed (an optional dependency, never
  required) and the span is recording;
- passed to the policy's ``on_retry`` callback as a :class:`RetryEvent`.

The snapshot also shows the engine's admission gate (:mod:`._admission`): its
current limit, the attempts in flight and queued, and the time spent queued.

Counters live in a dictionary keyed weakly by the (sync) engine and guarded by
a lock, so the sync helpers may run in threads.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from ._admission import peek

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .classify import Classification

try:  # OpenTelemetry is optional.
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    _otel_trace = None  # type: ignore[assignment]

__all__ = ["RetryEvent", "RetryStats", "retry_stats"]

log = logging.getLogger("sqlalchemy_crdb_async.retry")

#: Name of the OpenTelemetry span event added per retry.
SPAN_EVENT = "db.transaction.retry"


@dataclass(frozen=True)
class RetryEvent:
    """One retry, as passed to ``RetryPolicy.on_retry``."""

    #: The attempt that failed (1 for the first).
    attempt: int
    #: SQLSTATE of the error, if it had one.
    sqlstate: str | None
    #: CockroachDB's retry reason code (metrics only), e.g. ``RETRY_SERIALIZABLE``.
    reason: str | None
    #: Seconds the helper sleeps before the next attempt.
    sleep_s: float
    #: The error that caused the retry.
    error: BaseException = field(repr=False)
    #: True when the transaction is recovered by replaying its statements
    #: (:func:`.retrying_session`), False when the work is run again.
    replay: bool = False


@dataclass(frozen=True)
class RetryStats:
    """A snapshot of one engine's retry counters (see :func:`retry_stats`)."""

    #: Transaction attempts started (first tries, retries and replays).
    attempts: int = 0
    #: Transactions committed through a retry helper.
    commits: int = 0
    #: Retries (including replays).
    retries: int = 0
    #: Retries by SQLSTATE ("none" when the error had none, e.g. a lost socket).
    retries_by_sqlstate: Mapping[str, int] = field(default_factory=dict)
    #: Retries of 40001 by CockroachDB reason code ("unknown" when absent), and
    #: of CockroachDB's transient errors by name: ``RANGE_UNAVAILABLE`` (58C00),
    #: ``INTERNAL_CONNECTION_FAILURE`` (58C01), ``TOO_MANY_CONNECTIONS`` (53300).
    retries_by_reason: Mapping[str, int] = field(default_factory=dict)
    #: Times a helper gave up (RetriesExhaustedError).
    give_ups: int = 0
    #: Attempts cancelled because ``RetryPolicy.deadline_s`` passed while they
    #: ran (each also counted in ``give_ups``; :class:`.DeadlineExceededError`).
    deadline_cancels: int = 0
    #: Ambiguous commits seen (raised, or retried when idempotent).
    ambiguous: int = 0
    #: Replays that matched and carried on (:func:`.retrying_session`).
    replays: int = 0
    #: Replays that raised ReplayMismatchError.
    replay_mismatches: int = 0
    #: Seconds spent sleeping between attempts.
    backoff_s: float = 0.0
    #: Key claims that had to wait for another attempt holding one of their
    #: keys (:func:`.claim_keys`).
    claim_waits: int = 0
    #: The admission gate's current limit on attempts in flight (see
    #: :mod:`._admission`); 0 before the engine's first gated attempt.
    admission_limit: int = 0
    #: Attempts holding an admission slot now.
    admission_in_flight: int = 0
    #: Attempts waiting for a slot now.
    admission_queued: int = 0
    #: Attempts that had to wait for a slot (since the gate was made).
    admission_waits: int = 0
    #: Seconds attempts spent waiting for a slot, in all (since the gate was made).
    admission_wait_s: float = 0.0

    @property
    def retries_per_commit(self) -> float:
        """``retries / commits`` (0.0 before the first commit)."""
        return self.retries / self.commits if self.commits else 0.0


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: Counter[str] = Counter()
        self.by_sqlstate: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.backoff_s = 0.0

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.values[name] += n

    def retry(self, verdict: Classification, sleep_s: float, *, replay: bool) -> None:
        with self.lock:
            self.values["retries"] += 1
            if replay:
                self.values["replay_attempts"] += 1
            self.by_sqlstate[verdict.sqlstate or "none"] += 1
            if verdict.sqlstate == "40001" or verdict.transient:
                self.by_reason[verdict.reason or "unknown"] += 1
            self.backoff_s += sleep_s

    def snapshot(self, reset: bool) -> RetryStats:
        with self.lock:
            stats = RetryStats(
                attempts=self.values["attempts"],
                commits=self.values["commits"],
                retries=self.values["retries"],
                retries_by_sqlstate=MappingProxyType(dict(self.by_sqlstate)),
                retries_by_reason=MappingProxyType(dict(self.by_reason)),
                give_ups=self.values["give_ups"],
                deadline_cancels=self.values["deadline_cancels"],
                ambiguous=self.values["ambiguous"],
                replays=self.values["replays"],
                replay_mismatches=self.values["replay_mismatches"],
                backoff_s=self.backoff_s,
                claim_waits=self.values["claim_waits"],
            )
            if reset:
                self.__init__()  # type: ignore[misc]
        return stats


_counters: weakref.WeakKeyDictionary[Engine, _Counters] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def counters_for(engine: Engine | None) -> _Counters:
    """The counters of ``engine`` (a sync Engine), created on first use; None:
    counters of no engine (a route whose endpoint opened no session of its
    own), which :func:`retry_stats` does not show."""
    if engine is None:
        return _Counters()
    with _counters_lock:
        found = _counters.get(engine)
        if found is None:
            found = _counters[engine] = _Counters()
        return found


def retry_stats(engine: Any, *, reset: bool = False) -> RetryStats:
    """A snapshot of the retry counters of ``engine`` (AsyncEngine or Engine).

    Accepts: the engine the helpers ran on, async or sync (they count per
    engine, every helper alike); ``reset=True`` zeroes the counters after
    taking the snapshot. Returns a frozen :class:`RetryStats`: ``attempts``,
    ``commits``, ``retries`` (and ``retries_per_commit``),
    ``retries_by_sqlstate``, ``retries_by_reason`` (CockroachDB's reason code
    of each 40001, such as ``RETRY_SERIALIZABLE``, and the name of each
    transient CockroachDB error retried, such as ``RANGE_UNAVAILABLE``),
    ``give_ups``, ``deadline_cancels``,
    ``ambiguous``, ``replays``, ``replay_mismatches`` and ``backoff_s``. It
    retries nothing. Raises ``TypeError`` for anything but an engine.

    Example::

        from sqlalchemy import text

        from sqlalchemy_crdb_async import retry_stats, run_transaction

        async def read(conn):
            return (await conn.execute(text("SELECT 1"))).scalar_one()

        retry_stats(engine, reset=True)
        await run_transaction(engine, read)
        stats = retry_stats(engine)
        assert stats.commits == 1
        print(stats.retries_per_commit, dict(stats.retries_by_reason))
    """
    sync_engine = getattr(engine, "sync_engine", engine)
    if not isinstance(sync_engine, Engine):
        raise TypeError(
            f"retry_stats() takes an AsyncEngine or Engine, got {type(engine).__name__}"
        )
    stats = counters_for(sync_engine).snapshot(reset)
    gate = peek(sync_engine)
    if gate is None:
        return stats
    return replace(
        stats,
        admission_limit=gate.current_limit,
        admission_in_flight=gate.in_flight,
        admission_queued=gate.queued,
        admission_waits=gate.waits,
        admission_wait_s=gate.wait_s,
    )


def report_retry(event: RetryEvent, api: str) -> None:
    """Log ``event`` at DEBUG and add it to the current OpenTelemetry span."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s: attempt %d failed with SQLSTATE %s (reason %s); %s after %.3f s",
            api,
            event.attempt,
            event.sqlstate,
            event.reason,
            "replaying" if event.replay else "retrying",
            event.sleep_s,
        )
    if _otel_trace is not None:
        span = _otel_trace.get_current_span()
        if span.is_recording():
            attributes: dict[str, str | int | float | bool] = {
                "db.transaction.attempt": event.attempt,
                "db.transaction.retry.sleep_s": event.sleep_s,
                "db.transaction.retry.replay": event.replay,
                "db.transaction.retry.api": api,
            }
            if event.sqlstate:
                attributes["db.response.status_code"] = event.sqlstate
            if event.reason:
                attributes["db.cockroachdb.retry_reason"] = event.reason
            span.add_event(SPAN_EVENT, attributes=attributes)
