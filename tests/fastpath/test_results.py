"""The fast path returns what the ordinary path returns, for every mapped type.

Each row is read through ``prepared()`` on an engine, a connection and a
session, and through ``connection.execute()``; values, their Python types and
the row's keys must be equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sqlalchemy_crdb_async import PoolSettings, prepared

from .support import EMPTY, FULL, metadata, types_table

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

t = types_table
BY_ID = sa.select(t).where(t.c.id == sa.bindparam("id"))
FAST_BY_ID = prepared(BY_ID)


@pytest.fixture(params=["default pool", "PoolSettings"])
async def loaded(
    request: pytest.FixtureRequest, crdb_url: URL
) -> AsyncIterator[AsyncEngine]:
    from sqlalchemy.ext.asyncio import create_async_engine

    kwargs: dict[str, Any] = (
        {}
        if request.param == "default pool"
        else PoolSettings(pool_size=2).engine_kwargs()
    )
    eng = create_async_engine(crdb_url, **kwargs)
    try:
        async with eng.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(t.insert(), [FULL, EMPTY])
        yield eng
    finally:
        await eng.dispose()


def _same(fast: sa.Row[Any], ordinary: sa.Row[Any]) -> None:
    assert fast._fields == ordinary._fields
    for name, got, want in zip(fast._fields, fast, ordinary, strict=True):
        assert got == want, name
        assert type(got) is type(want), name


@pytest.mark.parametrize("key", [1, 2], ids=["values", "nulls"])
async def test_every_type_as_the_ordinary_path(loaded: AsyncEngine, key: int) -> None:
    async with loaded.connect() as conn:
        ordinary = (await conn.execute(BY_ID, {"id": key})).one()
        _same(await FAST_BY_ID.one(conn, id=key), ordinary)
    _same(await FAST_BY_ID.one(loaded, id=key), ordinary)
    async with AsyncSession(loaded) as session:
        _same(await FAST_BY_ID.one(session, id=key), ordinary)
    # twice more on the same pooled connection: the prepared statement is reused
    for _ in range(2):
        _same(await FAST_BY_ID.one(loaded, id=key), ordinary)


async def test_row_access_by_name_index_and_column(loaded: AsyncEngine) -> None:
    row = await FAST_BY_ID.one(loaded, id=1)
    assert row.num == FULL["num"]
    assert row[3] == FULL["num"]
    assert row._mapping["num"] == FULL["num"]
    assert row._mapping[t.c.num] == FULL["num"]
    assert row._asdict()["js"] == FULL["js"]


async def test_read_methods(loaded: AsyncEngine) -> None:
    ids = prepared(sa.select(t.c.id, t.c.num).order_by(t.c.id))
    assert [r.id for r in await ids.all(loaded)] == [1, 2]
    first = await ids.first(loaded)
    assert first is not None
    assert first.id == 1
    assert await ids.scalars(loaded) == [1, 2]
    assert await ids.scalar(loaded) == 1
    with pytest.raises(sa.exc.MultipleResultsFound):
        await ids.one_or_none(loaded)
    with pytest.raises(sa.exc.MultipleResultsFound):
        await ids.one(loaded)
    assert await FAST_BY_ID.one_or_none(loaded, id=99) is None
    assert await FAST_BY_ID.first(loaded, id=99) is None
    assert await FAST_BY_ID.scalar(loaded, id=99) is None
    with pytest.raises(sa.exc.NoResultFound):
        await FAST_BY_ID.one(loaded, id=99)
    nums = prepared(sa.select(t.c.num_float).where(t.c.id == 1))
    assert await nums.scalars(loaded) == [2.5]  # the processor of column 0 applied


async def test_labels_expressions_and_bound_values(loaded: AsyncEngine) -> None:
    stmt = (
        sa.select((t.c.num * 2).label("twice"), sa.func.upper(t.c.s).label("loud"))
        .where(t.c.id == sa.bindparam("id"), t.c.small > 1)
        .limit(5)
    )
    async with loaded.connect() as conn:
        ordinary = (await conn.execute(stmt, {"id": 1})).one()
    _same(await prepared(stmt).one(loaded, id=1), ordinary)


async def test_writes_rowcount_and_returning(loaded: AsyncEngine) -> None:
    insert = prepared(
        t.insert().values(
            id=sa.bindparam("id"), num=sa.bindparam("num"), js=sa.bindparam("js")
        )
    )
    assert await insert.execute(loaded, id=10, num=FULL["num"], js={"x": 1}) == 1
    update = prepared(
        t.update()
        .where(t.c.id == sa.bindparam("key"))
        .values(small=sa.bindparam("small"))
        .returning(t.c.id, t.c.small, t.c.js)
    )
    row = await update.one(loaded, key=10, small=3)
    assert tuple(row) == (10, 3, {"x": 1})
    delete = prepared(t.delete().where(t.c.id >= sa.bindparam("low")))
    assert await delete.execute(loaded, low=10) == 1
    assert await FAST_BY_ID.one_or_none(loaded, id=10) is None


async def test_a_write_through_the_engine_is_committed(loaded: AsyncEngine) -> None:
    bump = prepared(t.update().where(t.c.id == 1).values(small=t.c.small + 1))
    assert await bump.execute(loaded) == 1
    async with loaded.connect() as conn:
        assert await conn.scalar(sa.select(t.c.small).where(t.c.id == 1)) == 8
