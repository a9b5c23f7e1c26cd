"""RetryPolicy under bad input (hypothesis): every field, any value; either a
policy whose backoff is a finite, bounded number, or an error naming the field."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sqlalchemy_crdb_async import RetryPolicy
from tests.strategies import any_value

FIELDS = [f.name for f in dataclasses.fields(RetryPolicy)]
ANY_VALUE = any_value("full", "equal", "none", print)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), ANY_VALUE, st.integers(min_value=1, max_value=10**6))
def test_any_value_is_accepted_or_named(name: str, value: Any, retry: int) -> None:
    try:
        policy = RetryPolicy(**{name: value})
    except (ValueError, TypeError) as err:
        message = str(err)
        assert f"RetryPolicy.{name}" in message or name in message, message
        return
    sleep_s = policy.backoff_s(retry, random.Random(retry))
    assert math.isfinite(sleep_s)
    assert 0 <= sleep_s <= policy.max_backoff_s
