"""``VECTOR(n)``: embeddings as a column type, distance operators, search beam.

CockroachDB has the ``VECTOR`` type from v24.2 (release note of
https://github.com/cockroachdb/cockroach/pull/124292;
https://www.cockroachlabs.com/docs/v24.2/vector), with pgvector's text form and
operators; PostgreSQL has it with the pgvector extension
(``CREATE EXTENSION vector``). One declaration serves both::

    from sqlalchemy import select
    from sqlalchemy.orm import Mapped, mapped_column
    from sqlalchemy_crdb_async import VECTOR

    class Doc(Base):
        __tablename__ = "docs"
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding: Mapped[list[float]] = mapped_column(VECTOR(3))

    nearest = select(Doc).order_by(Doc.embedding.l2_distance([1, 2, 3])).limit(5)

DDL is ``VECTOR(3)`` (a ``CompileError`` on CockroachDB below v24.2). Values go
in as a ``list``/``tuple`` of numbers, a one-dimensional ``numpy.ndarray`` (numpy
is never imported unless you pass one), or the text ``'[1,2,3]'``; they come back
as ``list[float]`` (``VECTOR(3, as_numpy=True)``: a float32 ``numpy.ndarray``).
A wrong number of dimensions, NaN or infinity, a string element, an empty
vector or more than 16000 dimensions raise
:class:`~sqlalchemy_crdb_async.errors.VectorValueError` (a ``ValueError``),
naming the column, before anything is sent; SQLAlchemy reports it as a
``StatementError`` whose ``orig`` is that error.

Comparators (the bound vector is typed ``VECTOR(n)``, cast in the SQL where the
driver needs it):

=================================  ===========================================
``col.l2_distance(v)``             ``col <-> v``, Euclidean distance
``col.cosine_distance(v)``         ``col <=> v``
``col.max_inner_product(v)``       ``col <#> v``, the *negative* inner product
``col.l1_distance(v)``             ``l1_distance(col, v)`` (CockroachDB has no
                                   ``<+>`` operator)
=================================  ===========================================

All are in CockroachDB's operator and function lists from v24.2
(tests/crdb_facts/builtins.json; ``docs/generated/sql/operators.md`` of the
cockroach release branches). :func:`vector_dims` and :func:`vector_norm` are
the two functions on a single vector both servers have.

:func:`set_vector_search_beam` sets the search effort of vector-index queries
for the current transaction only (``SET LOCAL``): ``vector_search_beam_size``
on CockroachDB (default 32, https://www.cockroachlabs.com/docs/v25.2/
vector-indexes), pgvector's ``hnsw.ef_search`` on PostgreSQL.

Code that never declares the type keeps working: text bound inside
``CAST(:p AS VECTOR)`` is sent as it is, and a vector selected without a type
comes back as a list (asyncpg, through the per-connection codec of
:mod:`._vector_codec`) or as the text ``'[1,2,3]'`` (psycopg, psycopg2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, exc, func, text
from sqlalchemy import types as sqltypes
from sqlalchemy.sql.base import SchemaEventTarget
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import UserDefinedType

from ..errors import VectorValueError
from ._vector_codec import (
    MAX_DIMENSIONS,
    check_vector,
    format_vector,
    parse_vector_text,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "MAX_DIMENSIONS",
    "VECTOR",
    "VectorValueError",
    "set_vector_search_beam",
    "vector_dims",
    "vector_norm",
]


class VECTOR(UserDefinedType[list[float]], SchemaEventTarget):
    """A fixed- (``VECTOR(n)``) or any-length (``VECTOR()``) vector of float32.

    See the module docstring.
    """

    cache_ok = True
    #: Marks the type for the compiler's CockroachDB version gate (compiler.py).
    __crdb_vector__ = True
    #: asyncpg and psycopg get ``$1::VECTOR(n)``: the server knows the type.
    render_bind_cast = True

    def __init__(self, dim: int | None = None, as_numpy: bool = False) -> None:
        if dim is not None and (
            isinstance(dim, bool)
            or not isinstance(dim, int)
            or not 1 <= dim <= MAX_DIMENSIONS
        ):
            raise exc.ArgumentError(
                f"VECTOR(dim): dim is the number of dimensions, an int from 1 to "
                f"{MAX_DIMENSIONS} (or None for any length), got {dim!r}"
            )
        self.dim = dim
        self.as_numpy = as_numpy
        self._column: Any = None

    def _set_parent(self, parent: Any, **kw: Any) -> None:
        # the column this type belongs to, for error messages (a plain
        # reference: a weak one would not pickle with the MetaData)
        self._column = parent

    def adapt(self, cls: Any, **kw: Any) -> Any:
        adapted = super().adapt(cls, **kw)
        if isinstance(adapted, VECTOR):
            adapted._column = self._column  # the dialect's copy names it too
        return adapted

    @property
    def column_label(self) -> str | None:
        """``"table.column"`` (or the column name) once attached to a column."""
        column = self._column
        if column is None:
            return None
        table = getattr(column, "table", None)
        name = getattr(table, "name", None)
        return f"{name}.{column.name}" if name else str(column.name)

    def get_col_spec(self, **kw: Any) -> str:
        return "VECTOR" if self.dim is None else f"VECTOR({self.dim})"

    @property
    def python_type(self) -> type[Any]:
        return list

    def bind_processor(self, dialect: Dialect) -> Any:
        dim, owner = self.dim, self
        if dialect.driver == "asyncpg":
            # the per-connection codec (._vector_codec) takes checked floats

            def to_list(value: Any) -> Any:
                if value is None:
                    return None
                return list(check_vector(value, dim, owner.column_label))

            return to_list

        def to_text(value: Any) -> Any:
            if value is None:
                return None
            return format_vector(check_vector(value, dim, owner.column_label))

        return to_text

    def literal_processor(self, dialect: Dialect) -> Any:
        dim, owner = self.dim, self

        def literal(value: Any) -> str:
            checked = check_vector(value, dim, owner.column_label)
            return "'" + format_vector(checked) + "'"

        return literal

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        as_numpy = self.as_numpy

        def to_python(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                value = parse_vector_text(value)
            elif not isinstance(value, list):
                # pgvector-python's asyncpg codec gives numpy arrays
                value = [float(x) for x in value]
            if as_numpy:
                import numpy

                return numpy.asarray(value, dtype=numpy.float32)
            return value

        return to_python

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        return self  # the other side of a distance is a vector of this type

    class comparator_factory(UserDefinedType.Comparator[list[float]]):
        """The distance comparators of the module docstring."""

        def _distance(self, operator: str, other: Any) -> ColumnElement[float]:
            result: ColumnElement[float] = self.op(
                operator, return_type=sqltypes.Float
            )(other)  # type: ignore[assignment]
            return result

        def l2_distance(self, other: Any) -> ColumnElement[float]:
            """``col <-> other``: Euclidean (L2) distance."""
            return self._distance("<->", other)

        def cosine_distance(self, other: Any) -> ColumnElement[float]:
            """``col <=> other``: 1 - cosine similarity."""
            return self._distance("<=>", other)

        def max_inner_product(self, other: Any) -> ColumnElement[float]:
            """``col <#> other``: the negative inner product (smaller is closer)."""
            return self._distance("<#>", other)

        def l1_distance(self, other: Any) -> ColumnElement[float]:
            """``l1_distance(col, other)``: Manhattan distance."""
            if not isinstance(other, ClauseElement) and not hasattr(
                other, "__clause_element__"
            ):
                other = bindparam(None, other, type_=self.expr.type, unique=True)
            return func.l1_distance(self.expr, other, type_=sqltypes.Float)


def vector_dims(vector: Any) -> ColumnElement[int]:
    """``vector_dims(v)``: the number of dimensions (both servers; CockroachDB
    from v24.2, tests/crdb_facts/builtins.json)."""
    return func.vector_dims(vector, type_=sqltypes.Integer)


def vector_norm(vector: Any) -> ColumnElement[float]:
    """``vector_norm(v)``: the Euclidean norm (both servers; CockroachDB from
    v24.2, tests/crdb_facts/builtins.json)."""
    return func.vector_norm(vector, type_=sqltypes.Float)


async def set_vector_search_beam(
    conn: AsyncConnection | AsyncSession, beam_size: int
) -> None:
    """How many vector-index partitions (CockroachDB) or candidates (pgvector's
    HNSW) a nearest-neighbour query considers, for this transaction only.

    ``SET LOCAL vector_search_beam_size = n`` on CockroachDB (default 32;
    https://www.cockroachlabs.com/docs/v25.2/vector-indexes),
    ``SET LOCAL hnsw.ef_search = n`` on PostgreSQL (1 to 1000, pgvector's
    README). Call it inside the transaction, before the query.
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(
            f"set_vector_search_beam: beam_size is a positive int, got {beam_size!r}"
        )
    from sqlalchemy.ext.asyncio import AsyncConnection

    dialect: Any = (
        conn.dialect if isinstance(conn, AsyncConnection) else conn.get_bind().dialect
    )
    crdb = bool(getattr(dialect, "is_cockroachdb", False))
    name = "vector_search_beam_size" if crdb else "hnsw.ef_search"
    # SET takes no bind parameters; the value is an int checked above
    await conn.execute(text(f"SET LOCAL {name} = {int(beam_size)}"))
