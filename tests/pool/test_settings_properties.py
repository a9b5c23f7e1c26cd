"""PoolSettings under bad input (hypothesis): every field, any value; either
valid settings or an error that names the field, never a hang or a crash."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sqlalchemy_crdb_async import PoolSettings
from tests.strategies import any_value

FIELDS = [f.name for f in dataclasses.fields(PoolSettings)]
ANY_VALUE = any_value()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), ANY_VALUE)
def test_any_value_is_accepted_or_named(name: str, value: Any) -> None:
    try:
        made = PoolSettings(**{name: value})
    except (ValueError, TypeError) as err:
        message = str(err)
        assert f"PoolSettings.{name}" in message or name in message, message
        return
    # accepted: a usable value of the documented kind, and engine kwargs follow
    got = getattr(made, name)
    if isinstance(got, float):
        assert not math.isnan(got)
    kwargs = made.engine_kwargs()
    assert kwargs["pool_size"] >= 1


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.integers(min_value=-5, max_value=10**6), ANY_VALUE),
    st.one_of(st.integers(min_value=-5, max_value=1000), ANY_VALUE),
)
def test_for_cluster_sizes(vcpus: Any, app_instances: Any) -> None:
    try:
        made = PoolSettings.for_cluster(vcpus=vcpus, app_instances=app_instances)
    except (ValueError, TypeError) as err:
        message = str(err)
        assert "vcpus" in message or "app_instances" in message, message
        return
    assert made.pool_size >= 1
    assert made.max_overflow == 0
