"""Hypothesis strategies shared by the bad-input tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def any_value(*extra: Any) -> st.SearchStrategy[Any]:
    """None, bools, huge and negative numbers, NaN and infinities, text,
    containers and ``extra``: what a caller may pass a knob by mistake."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**12), max_value=10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
        st.sampled_from([[], {}, object(), *extra]),
    )
