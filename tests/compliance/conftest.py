"""Run SQLAlchemy's and Alembic's compliance suites through cockroachdb+asyncpg.

SQLAlchemy's pytest plugin is loaded here (as third-party dialects do), and the
database URL it tests against comes from this package's test-server provider
(``CRDB_TEST_URL``, a ``cockroach`` binary, or an embedded PostgreSQL): the
server is resolved before SQLAlchemy's plugin reads ``--dburi``, a fresh
database with the schemas the suites expect is made, and everything is dropped
and stopped at the end.
"""

from __future__ import annotations

# ruff: noqa: E402 - SQLAlchemy's modules must be imported after the assert hook
import asyncio
from typing import TYPE_CHECKING

import pytest

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin import pytestplugin as _sqla_plugin
from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: F403 - SQLAlchemy's hooks

import sqlalchemy_crdb_async  # noqa: F401 - registers the cockroachdb dialects
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.testing.provider import TestServer, resolve_server

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DATABASE = "sqla_compliance"
SCHEMAS = ("test_schema", "test_schema_2")

_server: TestServer | None = None


def _provide_dburi(config: pytest.Config) -> None:
    global _server
    if config.option.dburi or config.option.db:
        return  # an explicit --dburi / --db wins
    _server = resolve_server()
    url = _server.create_database(DATABASE)
    asyncio.run(_execute(url, [f"CREATE SCHEMA {s}" for s in SCHEMAS]))
    config.option.dburi = [url.render_as_string(hide_password=False)]


async def _execute(url: URL, statements: list[str]) -> None:
    import asyncpg

    _, params = CockroachDBDialect_asyncpg().create_connect_args(url)
    conn = await asyncpg.connect(**params)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def pytest_configure(config: pytest.Config) -> None:
    _provide_dburi(config)
    _sqla_plugin.pytest_configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    _sqla_plugin.pytest_unconfigure(config)
    if _server is not None:
        _server.drop_database(DATABASE)
        _server.stop()


def pytest_report_header(config: pytest.Config) -> str:
    if _server is None:
        return "crdb-async compliance: explicit --dburi"
    return f"crdb-async compliance server: {_server.describe()}"
