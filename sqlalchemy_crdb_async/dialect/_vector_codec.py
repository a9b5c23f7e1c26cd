"""Vector values on the wire: checking, text and binary forms, the asyncpg codec.

One place turns what an application passes for a vector (a list or tuple of
numbers, a ``numpy.ndarray``, or the text ``'[1,2,3]'`` that code written
without the type binds inside ``CAST(:p AS VECTOR)``) into a checked tuple of
floats (:func:`check_vector`), and a server's answer back into a list
(:func:`parse_vector_text`, :func:`unpack_vector`).

Forms (the same on CockroachDB and on PostgreSQL with pgvector):

text
    ``[1,2.5,-3e-05]``: what every server version reads and writes
    (tests/crdb_facts/vectors.md section 1, "Text input" / "Text output").
binary
    pgvector's ``vector_send`` layout: uint16 dimensions, uint16 unused (0),
    then float32 values, big-endian. CockroachDB sends it from v24.2 and reads
    it as a parameter only from v25.4 (release note of
    https://github.com/cockroachdb/cockroach/pull/148719; the pgwire test
    pkg/sql/pgwire/testdata/pgtest/pgvector), so parameters are sent in text
    below v25.4.

asyncpg
-------
:func:`vector_connection_class` wraps the connection class the dialect connects
with. asyncpg looks up every type it has no codec for once per connection, the
first time a statement uses it (``Connection._introspect_types``; with
:class:`~sqlalchemy_crdb_async.CockroachPool` that answer comes from the pool's
shared cache). When that answer contains the ``vector`` type, the codec is set on
this connection (``set_type_codec``) from the row just seen: no query of its
own, nothing per checkout, and never process-wide. The codec encodes a list,
tuple, array or vector text, and decodes to a ``list[float]``. On an asyncpg
without those private methods (checked by :func:`hook_supported`), connections
are left alone and vectors travel as text (the ``VECTOR`` type still converts).
"""

from __future__ import annotations

import inspect
import math
import re
import struct
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import VectorValueError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MAX_DIMENSIONS",
    "VectorValueError",
    "check_vector",
    "encode_vector_binary",
    "encode_vector_text",
    "format_vector",
    "hook_supported",
    "pack_vector",
    "parse_vector_text",
    "unpack_vector",
    "vector_connection_class",
]

#: Most dimensions a vector may have: 16000 on CockroachDB (logic test
#: pkg/sql/logictest/testdata/logic_test/vector: "dimensions for type vector
#: cannot exceed 16000") and in pgvector (VECTOR_MAX_DIM, src/vector.h).
MAX_DIMENSIONS = 16000
#: Largest finite float32: a larger value is stored as infinity, which both
#: servers refuse ("infinite value not allowed in vector", logic test above).
FLOAT32_MAX = 3.4028234663852886e38
_HEADER = struct.Struct(">HH")
_PLAIN_NUMBERS = {float, int}
_TEXT = re.compile(r"^\s*\[(.*)\]\s*$", re.DOTALL)
# CockroachDB: VECTOR binary input from v25.4 (module docstring).
_CRDB_BINARY_INPUT_SINCE = (25, 4)
_CRDB_VERSION = re.compile(r"v(\d+)\.(\d+)")


def _where(column: str | None) -> str:
    return f"column {column!r}" if column else "a VECTOR value"


def check_vector(
    value: Any, dim: int | None = None, column: str | None = None
) -> tuple[float, ...]:
    """``value`` as a tuple of finite float32-range floats, or VectorValueError.

    Accepts a list or tuple of numbers, a one-dimensional numpy array, or the
    text form ``'[1,2,3]'``. Refuses strings inside the sequence, booleans,
    NaN and infinities, values beyond float32, an empty vector, more than
    :data:`MAX_DIMENSIONS`, and a length other than ``dim`` when given; the
    message names ``column``.
    """
    where = _where(column)
    if isinstance(value, str):
        items: Sequence[Any] = _split_text(value, where)
    elif isinstance(value, (list, tuple)):
        items = value
    elif hasattr(value, "tolist") and getattr(value, "ndim", 1) == 1:
        items = value.tolist()  # numpy.ndarray, without importing numpy
    elif hasattr(value, "to_list"):
        items = value.to_list()  # pgvector-python's Vector
    else:
        raise VectorValueError(
            f"{where}: expected a list of numbers, a 1-D numpy array or text like "
            f"'[1,2,3]', got {type(value).__name__}"
        )
    count = len(items)
    if count == 0:
        raise VectorValueError(f"{where}: a vector needs at least 1 dimension")
    if count > MAX_DIMENSIONS:
        raise VectorValueError(
            f"{where}: {count} dimensions; the server maximum is {MAX_DIMENSIONS}"
        )
    if dim is not None and count != dim:
        raise VectorValueError(
            f"{where}: expected {dim} dimensions, got {count}; the column is "
            f"VECTOR({dim})"
        )
    # the common case, checked without a Python loop per element (a NaN gets
    # past max/min but makes the sum NaN; the loop below then says which)
    if (
        set(map(type, items)) <= _PLAIN_NUMBERS
        and max(items) <= FLOAT32_MAX
        and min(items) >= -FLOAT32_MAX
        and math.isfinite(sum(items))
    ):
        return tuple(map(float, items))
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (bool, str, bytes)) or not hasattr(item, "__float__"):
            raise VectorValueError(
                f"{where}: element {i} is {item!r} ({type(item).__name__}); "
                "vector elements are numbers"
            )
        try:
            number = float(item)
        except OverflowError:  # an int beyond any float
            number = math.inf
        if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
            raise VectorValueError(
                f"{where}: element {i} is {item!r}; vector elements must be finite "
                "float32 values (no NaN or infinity, |x| <= 3.4e38)"
            )
        out.append(number)
    return tuple(out)


def _split_text(text: str, where: str) -> list[Any]:
    match = _TEXT.match(text)
    if match is None:
        raise VectorValueError(
            f"{where}: text {text[:40]!r} is not a vector; write it like '[1,2,3]'"
        )
    body = match[1].strip()
    if not body:
        return []
    items: list[Any] = []
    for part in body.split(","):
        try:
            items.append(float(part))
        except ValueError:
            raise VectorValueError(
                f"{where}: {part.strip()!r} in {text[:40]!r} is not a number"
            ) from None
    return items


def format_vector(values: Sequence[float]) -> str:
    """``[1.0,2.5]``: the text form both servers read."""
    return "[" + ",".join(map(repr, values)) + "]"


def parse_vector_text(text: str) -> list[float]:
    """``'[1,2.5]'`` -> ``[1.0, 2.5]`` (what the servers print; not checked)."""
    body = text.strip()[1:-1]
    return [float(x) for x in body.split(",")] if body.strip() else []


def pack_vector(values: Sequence[float]) -> bytes:
    """pgvector's binary form (module docstring)."""
    count = len(values)
    return _HEADER.pack(count, 0) + struct.pack(f">{count}f", *values)


def unpack_vector(data: bytes) -> list[float]:
    """The values of pgvector's binary form."""
    count, _unused = _HEADER.unpack_from(data)
    return list(struct.unpack_from(f">{count}f", data, _HEADER.size))


# -- asyncpg -----------------------------------------------------------------


def encode_vector_binary(value: Any) -> bytes:
    """The asyncpg binary encoder: a list, tuple, array or vector text."""
    if type(value) is list or type(value) is tuple:
        try:  # the VECTOR type checked it already; raw lists the server checks
            return pack_vector(value)
        except (struct.error, OverflowError):
            pass  # check_vector below says what is wrong
    return pack_vector(check_vector(value))


def encode_vector_text(value: Any) -> str:
    """The asyncpg text encoder (CockroachDB below v25.4)."""
    if isinstance(value, str):
        return value  # the server checks text it is sent as text
    return format_vector(check_vector(value))


def _decode_text(value: str) -> list[float]:
    return parse_vector_text(value)


def binary_input_ok(server_settings: Any) -> bool:
    """Whether the server reads binary VECTOR parameters: PostgreSQL (pgvector's
    ``vector_recv``) or CockroachDB v25.4+ (module docstring)."""
    crdb = getattr(server_settings, "crdb_version", None)
    if crdb is None:
        return True
    match = _CRDB_VERSION.search(str(crdb))
    return match is not None and (int(match[1]), int(match[2])) >= (
        _CRDB_BINARY_INPUT_SINCE
    )


def hook_supported(base: type[Any]) -> bool:
    """``base`` has the private asyncpg methods the codec hook overrides."""
    expected = {
        "_introspect_types": ["self", "typeoids", "timeout"],
        "_introspect_type": ["self", "typename", "schema"],
    }
    for name, params in expected.items():
        method = getattr(base, name, None)
        if method is None or not inspect.iscoroutinefunction(method):
            return False
        if list(inspect.signature(method).parameters) != params:
            return False
    return True


#: base class -> its subclass, both held weakly: each CockroachPool makes a
#: connection class of its own, which must go with the pool.
_classes: weakref.WeakKeyDictionary[type[Any], weakref.ref[type[Any]]] = (
    weakref.WeakKeyDictionary()
)


def vector_connection_class(base: type[Any]) -> type[Any]:
    """``base`` with the per-connection vector codec (module docstring); one
    subclass per base class, ``base`` itself when asyncpg changed."""
    known = _classes.get(base)
    cls = known() if known is not None else None
    if cls is not None:
        return cls
    if getattr(base, "_crdb_vector_codec", False) or not hook_supported(base):
        _classes[base] = weakref.ref(base)
        return base

    class VectorCodecConnection(base):  # type: ignore[misc]
        _crdb_vector_codec = True
        _crdb_vector_row: Any = None

        async def _introspect_types(self, typeoids: Any, timeout: Any) -> Any:
            rows, stmt = await super()._introspect_types(typeoids, timeout)
            for row in rows:
                if row["name"] == "vector" and row["kind"] == b"b":
                    await self._crdb_set_vector_codec(row)
            return rows, stmt

        async def _crdb_set_vector_codec(self, row: Any) -> None:
            self._crdb_vector_row = row
            binary = binary_input_ok(self.get_settings())
            try:
                await self.set_type_codec(
                    "vector",
                    schema=row["ns"],
                    encoder=encode_vector_binary if binary else encode_vector_text,
                    decoder=unpack_vector if binary else _decode_text,
                    format="binary" if binary else "text",
                )
            finally:
                self._crdb_vector_row = None

        async def _introspect_type(self, typename: str, schema: str) -> Any:
            row = self._crdb_vector_row
            if row is not None and (typename, schema) == ("vector", row["ns"]):
                return row  # the row introspection just returned: no query
            return await super()._introspect_type(typename, schema)

    VectorCodecConnection.__qualname__ = f"VectorCodec[{base.__qualname__}]"
    _classes[base] = weakref.ref(VectorCodecConnection)
    return VectorCodecConnection
