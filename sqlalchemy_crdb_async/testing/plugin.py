"""The pytest plugin ``crdb_async``: fixtures ``crdb_server``, ``crdb_url``,
``pgvector_server`` and ``pgvector_url``.

See :mod:`sqlalchemy_crdb_async.testing` for how to use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .provider import (
    TestServer,
    describe_candidate,
    resolve_pgvector_server,
    resolve_server,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import URL

_server_key = pytest.StashKey[TestServer]()
_pgvector_key = pytest.StashKey[TestServer]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crdb_async", "sqlalchemy-crdb-async test database")
    group.addoption(
        "--crdb-url",
        default=None,
        help="URL of the CockroachDB (or PostgreSQL) server to test against; "
        "default: $CRDB_TEST_URL, else a 'cockroach' binary on PATH, else an "
        "embedded PostgreSQL.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "crdb_only(feature): needs a CockroachDB server for `feature` (e.g. "
        "'AS OF SYSTEM TIME'); skipped on PostgreSQL with 'needs CockroachDB: "
        "<feature>'",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"crdb-async test server candidate: {describe_candidate(_option(config))}"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    server = config.stash.get(_server_key, None)
    if server is not None:
        terminalreporter.write_line(f"crdb-async test server: {server.describe()}")
    vector_server = config.stash.get(_pgvector_key, None)
    if vector_server is not None and vector_server is not server:
        terminalreporter.write_line(
            f"crdb-async vector server: {vector_server.describe()}"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    vector_server = config.stash.get(_pgvector_key, None)
    if vector_server is not None:
        del config.stash[_pgvector_key]
        if vector_server is not config.stash.get(_server_key, None):
            vector_server.stop()
    server = config.stash.get(_server_key, None)
    if server is not None:
        server.stop()
        del config.stash[_server_key]


def get_server(config: pytest.Config) -> TestServer:
    """The session's server, started on first use."""
    server = config.stash.get(_server_key, None)
    if server is None:
        server = resolve_server(_option(config))
        config.stash[_server_key] = server
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"crdb-async test server: {server.describe()}")
    return server


@pytest.fixture(scope="session")
def crdb_server(request: pytest.FixtureRequest) -> TestServer:
    """The running test server (started on first use, stopped at session end)."""
    return get_server(request.config)


@pytest.fixture(scope="module")
def crdb_url(request: pytest.FixtureRequest, crdb_server: TestServer) -> Iterator[URL]:
    """A ``cockroachdb+asyncpg`` URL of a fresh database for this test module."""
    name = "t_" + request.module.__name__.rsplit(".", 1)[-1]
    url = crdb_server.create_database(name)
    try:
        yield url
    finally:
        crdb_server.drop_database(name)


@pytest.fixture(scope="session")
def pgvector_server(request: pytest.FixtureRequest) -> TestServer:
    """A server with the VECTOR type: the session's own when it has it
    (CockroachDB v24.2+, PostgreSQL with pgvector), else an embedded PostgreSQL
    with pgvector started on first use and stopped at session end."""
    server = request.config.stash.get(_pgvector_key, None)
    if server is None:
        server = resolve_pgvector_server(get_server(request.config))
        request.config.stash[_pgvector_key] = server
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"crdb-async vector server: {server.describe()}")
    return server


@pytest.fixture(scope="module")
def pgvector_url(
    request: pytest.FixtureRequest, pgvector_server: TestServer
) -> Iterator[URL]:
    """A ``cockroachdb+asyncpg`` URL of a fresh database for this test module on
    :func:`pgvector_server`, with ``CREATE EXTENSION vector`` done."""
    name = "v_" + request.module.__name__.rsplit(".", 1)[-1]
    url = pgvector_server.create_database(name, extensions=("vector",))
    try:
        yield url
    finally:
        pgvector_server.drop_database(name)


def crdb_only_reason(marker: pytest.Mark, running_on: str) -> str:
    """The skip reason of ``@pytest.mark.crdb_only("feature")`` on another server.

    ``needs CockroachDB: AS OF SYSTEM TIME (running on PostgreSQL 15.4)``; the
    feature is the marker's first argument or its ``feature=`` keyword.
    """
    feature = marker.args[0] if marker.args else marker.kwargs.get("feature")
    needs = f"needs CockroachDB: {feature}" if feature else "needs CockroachDB"
    return f"{needs} (running on {running_on})"


@pytest.fixture(autouse=True)
def _crdb_only(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("crdb_only")
    if marker is None:
        return
    server = get_server(request.config)
    if not server.is_cockroachdb:
        pytest.skip(crdb_only_reason(marker, server.info.describe()))


def _option(config: pytest.Config) -> str | None:
    value = config.getoption("--crdb-url", default=None)
    return str(value) if value else None
