"""The retry policy: how many attempts, how long, how far apart.

:class:`RetryPolicy` is the tuning knob (frozen, validated, units in names)::

    RetryPolicy(deadline_s=30.0, max_attempts=100, initial_backoff_s=0.02,
                max_backoff_s=1.0, multiplier=2.0, jitter="full",
                admission=True, on_retry=lambda event: print(event))

The defaults hold under contention: the deadline comes first (30 s from the
call, time spent queued for admission included), the attempt count second
(100, a guard against a loop of instant failures). A helper does not give up
while other transactions keep committing around it; when it does give up,
:class:`.RetriesExhaustedError` says which bound was hit (its ``bound`` is
``"deadline_s"`` or ``"max_attempts"``) and what to change.

Backoff before retry *n* (1 for the first retry) is capped exponential,
``min(max_backoff_s, initial_backoff_s * multiplier ** (n - 1))``, then jittered:

``"full"``  (the default) a uniform draw from ``[0, backoff]``;
``"equal"`` half the backoff plus a uniform draw from ``[0, backoff / 2]``;
``"none"``  the backoff itself.

``deadline_s`` bounds the whole call, wall-clock from entry to return: a
retry whose sleep would end past it is not started, an attempt still waiting
for admission at the deadline is not started either, and an attempt still
running at the deadline is cancelled, on the client and on the server
(:mod:`._deadline` says how, and what cannot be bounded), all ending in
:class:`.DeadlineExceededError` (a :class:`.RetriesExhaustedError`). The sync
``run_transaction`` can bound only its statements (``statement_timeout``; see
:mod:`.sync`).

``admission`` (on by default) passes every attempt through the engine's
contention-adaptive gate (:mod:`._admission`): a limit on transactions in
flight that halves on 40001/40P01 and grows while commits succeed first time.
``admission=False`` runs the attempt at once.

The attempt loop that applies a policy is :class:`._loop.AttemptLoop`.
"""

from __future__ import annotations

import inspect
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    from .stats import RetryEvent


__all__ = ["DEFAULT_POLICY", "Jitter", "RetryPolicy"]

Jitter = Literal["full", "equal", "none"]
_JITTERS = ("full", "equal", "none")

#: With inject_retry_errors on, this many attempts run with CockroachDB's
#: ``inject_retry_errors_enabled``; CockroachDB itself stops injecting after 3
#: restarts under the savepoint protocol (``numTxnRetryErrors = 3``,
#: tests/crdb_facts/session_vars.md section 3, from
#: https://www.cockroachlabs.com/docs/v24.3/transaction-retry-error-example).
INJECTED_ATTEMPTS = 3


def _check_number(name: str, value: object, minimum: float, *, open_: bool) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if open_ else value >= minimum)
    )
    if not ok:
        bound = f"> {minimum}" if open_ else f">= {minimum}"
        raise ValueError(
            f"RetryPolicy.{name} must be a finite number {bound}, got {value!r}"
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently the retry helpers retry (frozen, validated).

    Accepts the fields below, each checked when the policy is made: a wrong
    value raises ``ValueError`` naming the field and what it accepts. Pass it
    as ``policy=`` to :func:`.run_transaction`, :func:`.retrying`,
    :func:`.retrying_session` or the sync ``run_transaction``; the default is
    ``RetryPolicy()``.

    The backoff before retry *n* (1 for the first) is
    ``min(max_backoff_s, initial_backoff_s * multiplier ** (n - 1))``, then
    jittered: ``"full"`` draws from ``[0, backoff]``, ``"equal"`` from
    ``[backoff / 2, backoff]``, ``"none"`` sleeps the backoff. The helpers give
    up with :class:`.RetriesExhaustedError` after ``max_attempts`` attempts,
    and with :class:`.DeadlineExceededError` at ``deadline_s`` (an attempt
    running then is cancelled). What is
    retried is the helpers' business (see :func:`.run_transaction`); the
    policy only decides how often and when.

    Example::

        from sqlalchemy_crdb_async import RetryPolicy

        policy = RetryPolicy(max_attempts=5, max_backoff_s=0.5, deadline_s=10.0)
        assert policy.backoff_s(1) <= policy.initial_backoff_s
        assert RetryPolicy(jitter="none").backoff_s(30) == 1.0  # max_backoff_s
        await run_transaction(engine, lambda conn: conn.execute(text("SELECT 1")),
                              policy=policy)
    """

    #: Attempts in all, the first included (1 means no retry).
    max_attempts: int = 100
    #: Backoff before the first retry, in seconds (before jitter).
    initial_backoff_s: float = 0.02
    #: Upper bound of any one backoff, in seconds (before jitter).
    max_backoff_s: float = 1.0
    #: Growth of the backoff per retry.
    multiplier: float = 2.0
    #: ``"full"``, ``"equal"`` or ``"none"``.
    jitter: Jitter = "full"
    #: Wall-clock bound of the whole call, in seconds from entry to return
    #: (admission, attempts, backoff, cleanup): an attempt running when it
    #: passes is cancelled and DeadlineExceededError raised. None: no deadline.
    deadline_s: float | None = 30.0
    #: Called (synchronously) with a :class:`.RetryEvent` before each sleep.
    #: An exception it raises ends the retries and propagates.
    on_retry: Callable[[RetryEvent], None] | None = None
    #: CockroachDB only: run the first attempts with the session variable
    #: ``inject_retry_errors_enabled`` on, so every statement fails with a
    #: retryable 40001 (a test hook for your retry handling;
    #: https://www.cockroachlabs.com/docs/v25.2/set-vars).
    inject_retry_errors: bool = False
    #: Pass attempts through the engine's contention-adaptive admission gate
    #: (:mod:`._admission`); False: start every attempt at once. The async
    #: helpers only: the sync ``run_transaction`` has no gate.
    admission: bool = True

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise ValueError(
                f"RetryPolicy.max_attempts must be an integer >= 1, "
                f"got {self.max_attempts!r}"
            )
        _check_number("initial_backoff_s", self.initial_backoff_s, 0, open_=False)
        _check_number("max_backoff_s", self.max_backoff_s, 0, open_=False)
        _check_number("multiplier", self.multiplier, 1, open_=False)
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"RetryPolicy.max_backoff_s ({self.max_backoff_s!r}) must be >= "
                f"initial_backoff_s ({self.initial_backoff_s!r})"
            )
        if self.jitter not in _JITTERS:
            raise ValueError(
                f"RetryPolicy.jitter must be one of 'full', 'equal', 'none', "
                f"got {self.jitter!r}"
            )
        if self.deadline_s is not None:
            _check_number("deadline_s", self.deadline_s, 0, open_=True)
        if self.on_retry is not None and not callable(self.on_retry):
            raise ValueError(
                f"RetryPolicy.on_retry must be callable or None, got {self.on_retry!r}"
            )
        if inspect.iscoroutinefunction(self.on_retry):
            raise ValueError(
                "RetryPolicy.on_retry must be a plain function: it is called, not "
                f"awaited, got the coroutine function {self.on_retry!r}"
            )
        for flag in ("inject_retry_errors", "admission"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(
                    f"RetryPolicy.{flag} must be True or False, got "
                    f"{getattr(self, flag)!r}"
                )

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry number ``retry`` (1 for the first)."""
        exponent = min(retry - 1, 1000)
        try:
            raw = self.initial_backoff_s * self.multiplier**exponent
        except OverflowError:
            raw = self.max_backoff_s
        base = min(self.max_backoff_s, raw)
        draw = (rng or random).random()
        if self.jitter == "full":
            return base * draw
        if self.jitter == "equal":
            return base / 2 + base / 2 * draw
        return base


DEFAULT_POLICY = RetryPolicy()
