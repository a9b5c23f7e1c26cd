"""libpq-style URL parameters reach the server through asyncpg."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


async def _scalar(url: URL, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text(sql))).scalar()
    finally:
        await engine.dispose()


async def test_application_name(crdb_url: URL) -> None:
    url = crdb_url.update_query_dict({"application_name": "orders-api"})
    assert await _scalar(url, "SHOW application_name") == "orders-api"


async def test_options_startup_parameter(crdb_url: URL) -> None:
    # libpq's options string, sent as the "options" startup parameter
    # (CockroachDB Cloud uses it for --cluster=<name>).
    url = crdb_url.update_query_dict({"options": "-c statement_timeout=4321"})
    shown = await _scalar(url, "SHOW statement_timeout")
    assert shown in ("4321ms", "4321")  # PostgreSQL, CockroachDB spelling


async def test_connect_timeout_and_sslmode_disable(crdb_url: URL) -> None:
    url = crdb_url.update_query_dict({"connect_timeout": "5", "sslmode": "disable"})
    assert await _scalar(url, "SELECT 1") == 1


async def test_prepared_statement_cache_size_passes_through(crdb_url: URL) -> None:
    url = crdb_url.update_query_dict({"prepared_statement_cache_size": "0"})
    assert await _scalar(url, "SELECT 2") == 2


async def test_bad_option_value_is_the_servers_error(crdb_url: URL) -> None:
    url = crdb_url.update_query_dict({"options": "-c no_such_setting=1"})
    with pytest.raises(sa.exc.DBAPIError) as info:
        await _scalar(url, "SELECT 1")
    # 42704 undefined_object (PostgreSQL) / unrecognized parameter.
    assert getattr(info.value.orig, "sqlstate", None) in ("42704", "22023")
