"""VECTOR(n) end to end on a server with the type (pgvector_url): DDL, values in
and out on asyncpg, psycopg and psycopg2, distance comparators, bad input
refused before anything is sent, and code that never declares the type."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import (
    VECTOR,
    VectorValueError,
    vector_dims,
    vector_norm,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

metadata = sa.MetaData()
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("embedding", VECTOR(3)),
    sa.Column("loose", VECTOR()),
)

ROWS = [
    {"id": 1, "embedding": [1.0, 0.0, 0.0], "loose": [1.0]},
    {"id": 2, "embedding": [0.0, 1.0, 0.0], "loose": [1.0, 2.0]},
    {"id": 3, "embedding": [0.9, 0.1, 0.0], "loose": None},
]


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module", params=["asyncpg", "psycopg_async"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def vengine(pgvector_url: URL, driver: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pgvector_url.set(drivername=f"cockroachdb+{driver}"))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        await conn.execute(items.insert(), ROWS)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_ddl_and_round_trip(vengine: AsyncEngine) -> None:
    async with vengine.connect() as conn:
        rows = (await conn.execute(sa.select(items).order_by(items.c.id))).all()
    assert [r.id for r in rows] == [1, 2, 3]
    assert all(isinstance(r.embedding, list) for r in rows)
    assert _close(rows[2].embedding, [0.9, 0.1, 0.0])
    assert _close(rows[1].loose, [1.0, 2.0])
    assert rows[2].loose is None
    ddl = str(sa.schema.CreateTable(items).compile(dialect=vengine.dialect))
    assert "embedding VECTOR(3)" in ddl
    assert "loose VECTOR," in ddl


async def test_nearest_neighbours_in_order_by_and_where(vengine: AsyncEngine) -> None:
    query = (
        sa.select(items.c.id, items.c.embedding.l2_distance([1, 0, 0]).label("d"))
        .where(items.c.embedding.cosine_distance([1, 0, 0]) < 0.5)
        .order_by(items.c.embedding.l2_distance([1, 0, 0]))
        .limit(2)
    )
    async with vengine.connect() as conn:
        rows = (await conn.execute(query)).all()
    assert [r.id for r in rows] == [1, 3]
    assert math.isclose(rows[1].d, math.sqrt(0.01 + 0.01), rel_tol=1e-5)
    ip = sa.select(items.c.id).order_by(items.c.embedding.max_inner_product([0, 1, 0]))
    l1 = sa.select(items.c.embedding.l1_distance([1, 1, 0])).where(items.c.id == 1)
    async with vengine.connect() as conn:
        assert (await conn.execute(ip)).scalars().first() == 2
        assert math.isclose((await conn.execute(l1)).scalar_one(), 1.0)
        dims, norm = (
            await conn.execute(
                sa.select(
                    vector_dims(items.c.embedding), vector_norm(items.c.embedding)
                ).where(items.c.id == 2)
            )
        ).one()
    assert dims == 3
    assert math.isclose(norm, 1.0)


def test_bound_vector_is_typed(vengine: AsyncEngine) -> None:
    sql = str(
        sa.select(items.c.id)
        .order_by(items.c.embedding.l2_distance([1, 0, 0]))
        .compile(dialect=vengine.dialect)
    )
    assert "<-> %(embedding_1)s::VECTOR(3)" in sql or "<-> $1::VECTOR(3)" in sql


async def test_numpy_in_and_as_numpy_out(vengine: AsyncEngine) -> None:
    numpy = pytest.importorskip("numpy", reason="numpy is optional")
    as_array = sa.select(sa.cast(items.c.embedding, VECTOR(3, as_numpy=True)))
    async with vengine.begin() as conn:
        await conn.execute(
            items.insert(), {"id": 9, "embedding": numpy.array([0.5, 0.25, 0.0])}
        )
        value = (await conn.execute(as_array.where(items.c.id == 9))).scalar_one()
    assert isinstance(value, numpy.ndarray)
    assert value.dtype == numpy.float32
    assert value.tolist() == [0.5, 0.25, 0.0]


BAD: list[tuple[Any, str]] = [
    ([1.0, 2.0], "expected 3 dimensions, got 2"),
    ([1.0, float("nan"), 2.0], "element 1 is nan"),
    ([1.0, float("inf"), 2.0], "element 1 is inf"),
    ([1.0, 1e39, 2.0], "finite float32"),
    ([1, 10**400, 2], "finite float32"),
    (["a", "b", "c"], "element 0 is 'a'"),
    ([True, 1.0, 2.0], "element 0 is True"),
    ([], "at least 1 dimension"),
    ("[1,2", "is not a vector"),
    ({"x": 1}, "expected a list of numbers"),
]


@pytest.mark.parametrize(("value", "message"), BAD)
async def test_bad_input_is_refused_before_sending(
    vengine: AsyncEngine, value: Any, message: str
) -> None:
    async with vengine.begin() as conn:
        with pytest.raises(exc.StatementError) as info:
            await conn.execute(items.insert(), {"id": 50, "embedding": value})
        assert isinstance(info.value.orig, VectorValueError)
        assert "column 'items.embedding'" in str(info.value.orig)
        assert message in str(info.value.orig)
        count_all = sa.select(sa.func.count()).select_from(items)
        count = (await conn.execute(count_all)).scalar()
    assert count == len(ROWS)


async def test_too_many_dimensions_for_any_length_column(vengine: AsyncEngine) -> None:
    async with vengine.begin() as conn:
        with pytest.raises(exc.StatementError, match="server maximum is 16000"):
            await conn.execute(items.insert(), {"id": 51, "loose": [0.5] * 16001})


def test_bad_dimension_argument() -> None:
    for dim in (0, -1, 16001, 2.5, True, "3"):
        with pytest.raises(exc.ArgumentError, match="number of dimensions"):
            VECTOR(dim)  # type: ignore[arg-type]


async def test_undeclared_text_in_cast_keeps_working(vengine: AsyncEngine) -> None:
    # code that never declares the type: text inside CAST, results read back
    async with vengine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO items (id, embedding) VALUES (7, CAST(:v AS VECTOR))"),
            {"v": "[3,4,0]"},
        )
        raw = (
            await conn.execute(sa.text("SELECT embedding FROM items WHERE id = 7"))
        ).scalar_one()
        near = (
            await conn.execute(
                sa.text(
                    "SELECT id FROM items ORDER BY embedding <-> CAST(:v AS VECTOR) "
                    "LIMIT 1"
                ),
                {"v": "[3,4,0.1]"},
            )
        ).scalar_one()
    # a list through the asyncpg codec, the server's text elsewhere
    assert raw in ([3.0, 4.0, 0.0], "[3,4,0]")
    assert near == 7


def test_metadata_with_vectors_pickles_and_columns_compare() -> None:
    import pickle

    from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg

    copy = pickle.loads(pickle.dumps(metadata))
    assert copy.tables["items"].c.embedding.type.column_label == "items.embedding"
    both = sa.select(items.c.embedding.l1_distance(items.c.loose))
    sql = str(both.compile(dialect=CockroachDBDialect_asyncpg()))
    assert "l1_distance(items.embedding, items.loose)" in sql
