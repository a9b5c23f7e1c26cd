"""Bad input to the fast path: a clear error naming what is wrong; the
server's errors as the ordinary path raises them, the connection still usable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import (
    FastPathError,
    PoolSettings,
    PreparedParameterError,
    pool_stats,
    prepared,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "fp_items"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(20), unique=True)


items = Item.__table__
BY_ID = prepared(sa.select(items).where(items.c.id == sa.bindparam("id")))
BY_ID_AND_NAME = prepared(
    sa.select(items).where(
        items.c.id == sa.bindparam("id"), items.c.name == sa.bindparam("name")
    )
)


@pytest.fixture
async def eng(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(crdb_url, **PoolSettings(pool_size=1).engine_kwargs())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(items.insert(), [{"id": 1, "name": "a"}])
        yield engine
    finally:
        await engine.dispose()


async def test_missing_and_unknown_parameters_are_named(eng: AsyncEngine) -> None:
    with pytest.raises(PreparedParameterError, match=r"missing id\b"):
        await BY_ID.one(eng)
    with pytest.raises(PreparedParameterError, match=r"unknown idd.*takes: id"):
        await BY_ID.one(eng, idd=1)
    with pytest.raises(
        PreparedParameterError, match=r"missing name; unknown nmae .*takes: id, name"
    ):
        await BY_ID_AND_NAME.one(eng, id=1, nmae="a")
    async with eng.connect() as conn:
        with pytest.raises(PreparedParameterError, match="missing id"):
            await BY_ID.one(conn)
    assert pool_stats(eng)["checked_out"] == 0
    assert (await BY_ID.one(eng, id=1)).name == "a"


async def test_a_parameter_of_the_wrong_type_keeps_the_connection(
    eng: AsyncEngine,
) -> None:
    with pytest.raises(sa.exc.DBAPIError):
        await BY_ID.one(eng, id="one")
    stats = pool_stats(eng)
    assert stats["checked_out"] == 0
    assert stats["connections_lost"] == 0
    assert (await BY_ID.one(eng, id=1)).name == "a"


async def test_server_errors_arrive_as_on_the_ordinary_path(eng: AsyncEngine) -> None:
    insert = prepared(
        items.insert().values(id=sa.bindparam("id"), name=sa.bindparam("name"))
    )
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await insert.execute(eng, id=2, name="a")
    assert caught.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    assert "fp_items" in str(caught.value)
    assert pool_stats(eng)["connections_lost"] == 0
    assert await insert.execute(eng, id=2, name="b") == 1


def test_statements_it_cannot_run_are_refused_at_once() -> None:
    with pytest.raises(FastPathError, match="select columns"):
        prepared(sa.select(Item).where(Item.id == sa.bindparam("id")))
    with pytest.raises(FastPathError, match="select\\(\\), insert\\(\\)"):
        prepared(sa.text("SELECT 1"))


async def test_an_expanding_in_list_is_refused_with_the_alternative(
    eng: AsyncEngine,
) -> None:
    q = prepared(sa.select(items).where(items.c.id.in_(sa.bindparam("ids"))))
    with pytest.raises(FastPathError, match="any_"):
        await q.all(eng, ids=[1])
    assert pool_stats(eng)["checked_out"] == 0


async def test_a_wrong_target_is_refused() -> None:
    with pytest.raises(FastPathError, match="AsyncEngine, AsyncConnection or"):
        await BY_ID.one("engine", id=1)  # type: ignore[arg-type]


async def test_psycopg_is_refused_naming_asyncpg(crdb_url: URL) -> None:
    engine = create_async_engine(crdb_url.set(drivername="cockroachdb+psycopg"))
    try:
        with pytest.raises(FastPathError, match="needs the asyncpg driver"):
            await BY_ID.one(engine, id=1)
        async with engine.connect() as conn:
            with pytest.raises(FastPathError, match="cockroachdb\\+asyncpg"):
                await BY_ID.one(conn, id=1)
    finally:
        await engine.dispose()
