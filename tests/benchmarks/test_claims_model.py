"""The claims model (benchmarks/claims_model.py): the policy claim_keys uses
runs more transfers at once, and makes claims wait less, than taking keys
one at a time in a fixed order. Deterministic (a seeded model, no timing)."""

from __future__ import annotations

import pytest

from benchmarks.claims_model import simulate


@pytest.mark.parametrize("clients", [16, 64])
def test_all_keys_at_once_runs_more_side_by_side(clients: int) -> None:
    ordered = simulate("ordered", clients=clients, transfers=5_000)
    at_once = simulate("all-at-once", clients=clients, transfers=5_000)
    assert at_once[0] > ordered[0] * 1.3  # transfers running at once
    assert at_once[2] < ordered[2]  # p99 wait


def test_a_reserving_waiter_bounds_the_longest_wait() -> None:
    never = simulate("all-at-once", clients=64, transfers=5_000, max_overtaken=10**9)
    bounded = simulate("all-at-once", clients=64, transfers=5_000)
    assert bounded[3] < never[3]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="'ordered' or 'all-at-once'"):
        simulate("random")
