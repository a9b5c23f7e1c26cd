"""check_vector over arbitrary input: a clean tuple of floats or VectorValueError,
never anything else; the text and binary forms round-trip what it accepts."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqlalchemy_crdb_async import VectorValueError
from sqlalchemy_crdb_async.dialect._vector_codec import (
    FLOAT32_MAX,
    check_vector,
    format_vector,
    pack_vector,
    parse_vector_text,
    unpack_vector,
)

ELEMENTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


@given(st.lists(ELEMENTS, max_size=20), st.one_of(st.none(), st.integers(1, 20)))
def test_accepts_exactly_the_valid_vectors(items: list[Any], dim: int | None) -> None:
    valid = (
        len(items) > 0
        and (dim is None or len(items) == dim)
        and all(
            type(x) in (int, float) and math.isfinite(x) and abs(x) <= FLOAT32_MAX
            for x in items
        )
    )
    if not valid:
        with pytest.raises(VectorValueError, match=r"'t\.v'"):
            check_vector(items, dim, "t.v")
        return
    checked = check_vector(items, dim, "t.v")
    assert checked == tuple(float(x) for x in items)
    assert parse_vector_text(format_vector(checked)) == list(checked)
    as_f32 = [struct.unpack(">f", struct.pack(">f", x))[0] for x in checked]
    assert unpack_vector(pack_vector(checked)) == as_f32
