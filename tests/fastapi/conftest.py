"""The ASGI client of a module's ``app_engine`` fixture (an app and its engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def client(
    app_engine: tuple[FastAPI, AsyncEngine],
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_engine[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
