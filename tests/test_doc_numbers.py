"""The numbers the migration guide and the README state are the code's.

Each case finds one stated number with a pattern (text joined across line
breaks) and compares it with the value read from the code: ``RetryPolicy()``'s
fields, the sync helper's keyword mapping, ``PoolSettings()``, the cleanup
bound, the admission gate's start. A changed default fails here until the
documents say the new number.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sqlalchemy_crdb_async import PoolSettings, RetryPolicy
from sqlalchemy_crdb_async._cleanup import CLEANUP_TIMEOUT_S
from sqlalchemy_crdb_async.retry._admission import AdmissionSettings
from sqlalchemy_crdb_async.retry.sync import (
    _UNSET,
    UNLIMITED_RETRIES_DEADLINE_S,
    _policy_from,
)

ROOT = Path(__file__).resolve().parent.parent
GUIDE = "docs/migrating-from-sqlalchemy-cockroachdb.md"
README = "README.md"
POLICY = RetryPolicy()
POOL = PoolSettings()


def _max_attempts_for_max_retries(n: int) -> int:
    """``max_attempts`` of what ``sync.run_transaction(..., max_retries=n)`` uses."""
    policy = _policy_from(None, n, _UNSET, False)
    assert policy is not None
    return policy.max_attempts


#: (document, pattern with one number group, the code's value)
CASES: dict[str, tuple[str, str, Any]] = {
    "guide: RetryPolicy() deadline": (
        GUIDE,
        r"deadline of (\d+) s \(`deadline_s`",
        POLICY.deadline_s,
    ),
    "guide: RetryPolicy() attempts": (
        GUIDE,
        r"(\d+) attempts \(`max_attempts`\)",
        POLICY.max_attempts,
    ),
    "guide: first backoff": (
        GUIDE,
        r"from (\d+) ms \(`initial_backoff_s`\)",
        POLICY.initial_backoff_s * 1000,
    ),
    "guide: backoff growth": (
        GUIDE,
        r"(doubling) \(`multiplier`\)",
        {2.0: "doubling"}.get(POLICY.multiplier),
    ),
    "guide: backoff cap": (
        GUIDE,
        r"up to (\d+) s \(`max_backoff_s`\)",
        POLICY.max_backoff_s,
    ),
    "guide: jitter": (GUIDE, r"with (\w+) jitter", POLICY.jitter),
    "guide: max_retries=None deadline": (
        GUIDE,
        r"`UNLIMITED_RETRIES_DEADLINE_S` \((\d+) s\)",
        UNLIMITED_RETRIES_DEADLINE_S,
    ),
    "guide: max_retries=None deadline, again": (
        GUIDE,
        r"`UNLIMITED_RETRIES_DEADLINE_S`, (\d+) s\)",
        UNLIMITED_RETRIES_DEADLINE_S,
    ),
    "guide: max_retries=N": (
        GUIDE,
        r"`RetryPolicy\(max_attempts=N \+ (\d+)\)`",
        _max_attempts_for_max_retries(7) - 7,
    ),
    "README: RetryPolicy() deadline": (
        README,
        r"\*\*(\d+) s\*\* \(`deadline_s`",
        POLICY.deadline_s,
    ),
    "README: RetryPolicy() attempts": (
        README,
        r"or (\d+) attempts \(`max_attempts`",
        POLICY.max_attempts,
    ),
    "README: sync max_retries=None deadline": (
        README,
        r"`None`: no attempt limit, bounded by a (\d+) s deadline",
        UNLIMITED_RETRIES_DEADLINE_S,
    ),
    "README: admission start": (
        README,
        r"in flight starts at (\d+),",
        AdmissionSettings().initial_limit,
    ),
    "README: for_cluster example": (
        README,
        r"for_cluster\(vcpus=12, app_instances=3\) # (\d+) per pool",
        PoolSettings.for_cluster(vcpus=12, app_instances=3).pool_size,
    ),
    "README: max_lifetime_s": (README, r"`max_lifetime_s=(\d+)`", POOL.max_lifetime_s),
    "README: lifetime jitter": (
        README,
        r"`lifetime_jitter_fraction=([\d.]+)`",
        POOL.lifetime_jitter_fraction,
    ),
    "README: idle before ping": (
        README,
        r"`idle_before_ping_s` \((\d+) s\)",
        POOL.idle_before_ping_s,
    ),
    "README: cleanup bound": (
        README,
        r"after (\d+) s \(`CLEANUP_TIMEOUT_S`",
        CLEANUP_TIMEOUT_S,
    ),
}


def _text(document: str) -> str:
    return " ".join((ROOT / document).read_text(encoding="utf-8").split())


def _same(stated: str, value: Any) -> bool:
    if isinstance(value, str):
        return stated == value
    return float(stated) == pytest.approx(float(value))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_document_states_the_codes_number(case: str) -> None:
    document, pattern, value = CASES[case]
    found = re.findall(pattern, _text(document))
    assert found, f"{document} no longer says /{pattern}/; state {value!r} there"
    wrong = [stated for stated in found if not _same(stated, value)]
    assert not wrong, f"{document} says {wrong} where the code has {value!r}"


def test_the_guide_no_longer_says_ten_attempts() -> None:
    assert "10 attempts" not in _text(GUIDE)
