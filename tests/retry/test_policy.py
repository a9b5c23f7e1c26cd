"""RetryPolicy: validation with exact messages, and the backoff schedule."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sqlalchemy_crdb_async import RetryPolicy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_attempts": 0},
            "RetryPolicy.max_attempts must be an integer >= 1, got 0",
        ),
        (
            {"max_attempts": 2.5},
            "RetryPolicy.max_attempts must be an integer >= 1, got 2.5",
        ),
        (
            {"max_attempts": True},
            "RetryPolicy.max_attempts must be an integer >= 1, got True",
        ),
        (
            {"initial_backoff_s": -1},
            "RetryPolicy.initial_backoff_s must be a finite number >= 0, got -1",
        ),
        (
            {"max_backoff_s": float("inf")},
            "RetryPolicy.max_backoff_s must be a finite number >= 0, got inf",
        ),
        (
            {"multiplier": 0.5},
            "RetryPolicy.multiplier must be a finite number >= 1, got 0.5",
        ),
        (
            {"initial_backoff_s": 2.0, "max_backoff_s": 1.0},
            "RetryPolicy.max_backoff_s (1.0) must be >= initial_backoff_s (2.0)",
        ),
        (
            {"jitter": "half"},
            "RetryPolicy.jitter must be one of 'full', 'equal', 'none', got 'half'",
        ),
        (
            {"deadline_s": 0},
            "RetryPolicy.deadline_s must be a finite number > 0, got 0",
        ),
        ({"on_retry": 3}, "RetryPolicy.on_retry must be callable or None, got 3"),
    ],
)
def test_bad_values_are_refused_with_exact_messages(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message) + "$"):
        RetryPolicy(**kwargs)


async def _async_hook(event: object) -> None:
    return None


def test_async_on_retry_is_refused() -> None:
    with pytest.raises(ValueError, match="on_retry must be a plain function"):
        RetryPolicy(on_retry=_async_hook)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 3  # type: ignore[misc]


def test_defaults() -> None:
    policy = RetryPolicy()
    # the deadline is the bound that holds under contention; attempts second
    assert policy.deadline_s == 30.0
    assert policy.max_attempts == 100
    assert policy.jitter == "full"
    assert policy.inject_retry_errors is False
    assert policy.admission is True


def test_admission_flag_is_validated() -> None:
    with pytest.raises(ValueError, match=r"RetryPolicy\.admission must be True"):
        RetryPolicy(admission=1)  # type: ignore[arg-type]


def test_backoff_is_capped_exponential_without_jitter() -> None:
    policy = RetryPolicy(
        initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0, jitter="none"
    )
    assert [policy.backoff_s(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.backoff_s(10_000) == 1.0  # no overflow


@pytest.mark.parametrize(("jitter", "low"), [("full", 0.0), ("equal", 0.2)])
def test_jitter_stays_within_its_range(jitter: str, low: float) -> None:
    policy = RetryPolicy(initial_backoff_s=0.4, max_backoff_s=0.4, jitter=jitter)  # type: ignore[arg-type]
    rng = random.Random(7)
    draws = [policy.backoff_s(1, rng) for _ in range(200)]
    assert all(low <= d <= 0.4 for d in draws)
    assert len(set(draws)) > 100
