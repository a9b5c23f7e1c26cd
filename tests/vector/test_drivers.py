"""Drivers: asyncpg's per-connection codec costs no query of its own; psycopg2
and pgvector-python's own VECTOR type work on this dialect."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import VECTOR, CockroachPool, VectorValueError
from sqlalchemy_crdb_async.dialect._vector_codec import (
    check_vector,
    format_vector,
    pack_vector,
    parse_vector_text,
    unpack_vector,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

metadata = sa.MetaData()
docs = sa.Table(
    "docs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("embedding", VECTOR(2)),
)


def test_forms_round_trip() -> None:
    values = check_vector([1, 2.5, -3e-05])
    assert parse_vector_text(format_vector(values)) == list(values)
    assert unpack_vector(pack_vector(values))[:2] == [1.0, 2.5]
    # pgvector's binary layout (pgwire test of CockroachDB: [1] -> 000100003f800000)
    assert pack_vector([1.0]).hex() == "000100003f800000"
    assert pack_vector([2.0, 3.0]).hex() == "000200004000000040400000"
    assert check_vector("[1, 2]") == (1.0, 2.0)


@pytest.mark.parametrize("pooled", [False, True])
async def test_asyncpg_codec_needs_no_query_of_its_own(
    pgvector_url: URL, pooled: bool
) -> None:
    kw: dict[str, Any] = {"poolclass": CockroachPool} if pooled else {}
    engine = create_async_engine(pgvector_url, **kw)
    sent: list[str] = []
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        await engine.dispose()
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            assert type(raw).__qualname__.startswith("VectorCodec[")
            original = raw._execute

            async def recording(query: str, *args: Any, **kw: Any) -> Any:
                sent.append(query)
                return await original(query, *args, **kw)

            raw._execute = recording
            await conn.execute(docs.insert(), {"id": 1, "embedding": [3, 4]})
            row = (
                await conn.execute(sa.text("SELECT embedding FROM docs WHERE id = 1"))
            ).scalar_one()
            await conn.rollback()
    finally:
        await engine.dispose()
    # undeclared: decoded by the codec, a list
    assert row == [3.0, 4.0]
    # no lookup of the type by name (asyncpg's set_type_codec query)
    assert not any("typname = $1" in q or "pg_type" in q for q in sent), sent


def test_psycopg2_values(pgvector_url: URL) -> None:
    engine = sa.create_engine(pgvector_url.set(drivername="cockroachdb+psycopg2"))
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            metadata.create_all(conn)
            conn.execute(docs.insert(), [{"id": 1, "embedding": [1, 1]}])
            conn.execute(docs.insert(), [{"id": 2, "embedding": (5, 5)}])
            got = conn.execute(
                sa.select(docs.c.id, docs.c.embedding).order_by(
                    docs.c.embedding.l2_distance([4, 4])
                )
            ).all()
    finally:
        engine.dispose()
    assert [r.id for r in got] == [2, 1]
    assert got[0].embedding == [5.0, 5.0]


async def test_pgvector_python_type_keeps_working(pgvector_url: URL) -> None:
    pgvector_sqlalchemy = pytest.importorskip(
        "pgvector.sqlalchemy", reason="pgvector-python is in the test extra"
    )
    theirs = sa.Table(
        "theirs",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("embedding", pgvector_sqlalchemy.VECTOR(3)),
    )
    for driver in ("asyncpg", "psycopg_async"):
        engine = create_async_engine(
            pgvector_url.set(drivername=f"cockroachdb+{driver}")
        )
        try:
            async with engine.begin() as conn:
                await conn.run_sync(theirs.metadata.drop_all)
                await conn.run_sync(theirs.metadata.create_all)
                await conn.execute(
                    theirs.insert(),
                    [
                        {"id": 1, "embedding": [1, 2, 3]},
                        {"id": 2, "embedding": [9, 9, 9]},
                    ],
                )
                nearest = (
                    await conn.execute(
                        sa.select(theirs.c.id, theirs.c.embedding).order_by(
                            theirs.c.embedding.cosine_distance([1, 2, 3.1])
                        )
                    )
                ).first()
        finally:
            await engine.dispose()
        assert nearest is not None
        assert nearest.id == 1, driver
        assert len(nearest.embedding) == 3, driver
        for got, want in zip(nearest.embedding, [1, 2, 3], strict=True):
            assert math.isclose(got, want), driver


async def test_undeclared_list_parameters_on_every_driver(pgvector_url: URL) -> None:
    # code without the type may bind a list inside CAST(:v AS VECTOR): asyncpg
    # through the codec, psycopg and psycopg2 as a float array, which both
    # servers cast to a vector (CockroachDB: ARRAY[1,2]::vector, logic test
    # pkg/sql/logictest/testdata/logic_test/vector)
    statement = sa.text("SELECT CAST(:v AS VECTOR) <-> CAST('[0,0]' AS VECTOR)")
    for driver in ("asyncpg", "psycopg_async"):
        engine = create_async_engine(
            pgvector_url.set(drivername=f"cockroachdb+{driver}")
        )
        try:
            async with engine.connect() as conn:
                distance = (await conn.execute(statement, {"v": [3.0, 4.0]})).scalar()
        finally:
            await engine.dispose()
        assert math.isclose(distance, 5.0), driver
    sync = sa.create_engine(pgvector_url.set(drivername="cockroachdb+psycopg2"))
    try:
        with sync.connect() as conn:
            distance = conn.execute(statement, {"v": [3.0, 4.0]}).scalar()
    finally:
        sync.dispose()
    assert math.isclose(distance, 5.0)


def test_codec_connection_classes_go_with_their_base() -> None:
    import gc

    import asyncpg

    from sqlalchemy_crdb_async.dialect._vector_codec import (
        _classes,
        vector_connection_class,
    )

    class PoolsOwn(asyncpg.Connection):  # as each CockroachPool makes one
        pass

    made = vector_connection_class(PoolsOwn)
    assert issubclass(made, PoolsOwn)
    assert vector_connection_class(PoolsOwn) is made
    assert vector_connection_class(made) is made  # never wrapped twice
    before = len(_classes)
    del made, PoolsOwn
    gc.collect()
    assert len(_classes) < before


@pytest.mark.parametrize("pooled", [False, True])
async def test_the_fast_path_takes_and_returns_vectors(
    pgvector_url: URL, pooled: bool
) -> None:
    from sqlalchemy_crdb_async import prepared

    kw: dict[str, Any] = {"poolclass": CockroachPool} if pooled else {}
    engine = create_async_engine(pgvector_url, **kw)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        insert = prepared(
            docs.insert().values(
                id=sa.bindparam("id"), embedding=sa.bindparam("embedding")
            )
        )
        for i, vector in enumerate([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]):
            assert await insert.execute(engine, id=i, embedding=vector) == 1
        nearest = prepared(
            sa.select(docs.c.id, docs.c.embedding)
            .order_by(docs.c.embedding.l2_distance(sa.bindparam("q", type_=VECTOR(2))))
            .limit(2)
        )
        rows = await nearest.all(engine, q=[0.9, 0.1])
        assert [r.id for r in rows] == [0, 2]
        assert rows[0].embedding == [1.0, 0.0]
        # the same statement through the ordinary path gives the same rows
        async with engine.connect() as conn:
            plain = (
                await conn.execute(
                    sa.select(docs.c.id, docs.c.embedding)
                    .order_by(docs.c.embedding.l2_distance([0.9, 0.1]))
                    .limit(2)
                )
            ).all()
        assert [tuple(r) for r in plain] == [tuple(r) for r in rows]
        # a wrong dimension is refused before anything is sent, naming the column
        with pytest.raises(VectorValueError, match=r"docs\.embedding"):
            await insert.execute(engine, id=9, embedding=[1.0, 2.0, 3.0])
        assert await nearest.all(engine, q=[0.0, 1.0]) != []
    finally:
        await engine.dispose()
