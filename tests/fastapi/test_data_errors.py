"""A data error (SQLSTATE class 22) under RetryingRoute: 422 worded for what
the request did (a read says nothing about storing), naming the column when
the server names one. The server raises every error here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from sqlalchemy_crdb_async.fastapi import RetryingRoute, session_dependency

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

#: The server raises 22003 naming a column (PostgreSQL's RAISE ... COLUMN, the
#: same field a built-in error fills).
RAISE_WITH_COLUMN = (
    "DO $$ BEGIN RAISE EXCEPTION 'amount too large' "
    "USING ERRCODE = '22003', COLUMN = 'amount'; END $$"
)


@pytest.fixture(params=["cockroachdb+asyncpg", "cockroachdb+psycopg"])
async def client(
    crdb_url: URL, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_async_engine(crdb_url.set(drivername=request.param))
    maker = async_sessionmaker(engine)
    router = APIRouter(route_class=RetryingRoute)
    get_session = Depends(session_dependency(maker))

    async def cast(session: AsyncSession, value: str) -> None:
        await session.execute(sa.text("SELECT CAST(:v AS int)"), {"v": value})

    @router.get("/cast")
    async def read_cast(value: str, session: AsyncSession = get_session) -> None:
        await cast(session, value)

    @router.post("/cast")
    async def write_cast(value: str, session: AsyncSession = get_session) -> None:
        await cast(session, value)

    @router.get("/column")
    async def read_column(session: AsyncSession = get_session) -> None:
        await session.execute(sa.text(RAISE_WITH_COLUMN))

    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c
    finally:
        await engine.dispose()


async def test_data_error_on_a_read_says_nothing_of_storing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/cast", params={"value": "abc"})
    assert response.status_code == 422
    body = response.json()
    assert body["sqlstate"].startswith("22")  # asyncpg: 22000, at encoding
    assert "stored" not in body["detail"]
    assert "written" not in body["detail"]
    assert "parameters" in body["detail"]
    assert "field" not in body  # the server named no column


async def test_data_error_on_a_write_says_nothing_was_written(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/cast", params={"value": "abc"})
    assert response.status_code == 422
    assert "nothing was written" in response.json()["detail"]


async def test_data_error_names_the_column_the_server_named(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/column")
    assert response.status_code == 422
    body = response.json()
    assert body["sqlstate"] == "22003"
    assert body["field"] == "amount"
    assert "(column amount)" in body["detail"]
    assert "amount too large" not in body["detail"]  # no server text echoed
