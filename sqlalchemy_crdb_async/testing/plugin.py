"""The pytest plugin ``crdb_async``: fixtures ``crdb_server``, ``crdb_url``,
``pgvector_server`` and ``pgvector_url``.

See :mod:`sqlalchemy_crdb_async.testing` for how to use it.

Async tests in a project that chose nothing
    ``async def test_orders(crdb_url)`` must run in a project that never
    configured an async test plugin (``pip install
    'sqlalchemy-crdb-async[testing]'``, a test file, ``python -m pytest``).
    So when neither pytest-asyncio's ``asyncio_mode`` nor anyio's
    ``anyio_mode`` is set (ini file, ``-o``, or ``--asyncio-mode`` /
    ``--anyio-mode``), a coroutine test that no plugin claims (no ``asyncio``,
    ``anyio`` or ``trio`` marker on it, its class or module, no
    ``anyio_backend`` among its fixtures) is handed to anyio's pytest plugin
    (the ``testing`` extra installs anyio) on the asyncio backend only, with
    anyio's ``anyio_backend`` fixture parametrized to ``"asyncio"`` at module
    scope: the test id gets ``[asyncio]``, and the test's async fixtures run
    in the same loop. Without anyio, pytest-asyncio's ``asyncio`` marker is
    used instead. Such a test failed before ("async def functions are not
    natively supported"), so no test that ran changes. A project that set
    either mode is left exactly as it is.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

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


#: Markers by which another plugin claims a coroutine test.
_ASYNC_MARKERS = frozenset({"asyncio", "anyio", "trio"})


def _mode_is_set(config: pytest.Config, name: str) -> bool:
    """Whether the project set the ini option or command-line flag ``name``."""
    if config.getoption(name, None):
        return True
    overrides = config.getoption("override_ini", None) or []  # -o name=value
    if any(str(o).partition("=")[0].strip() == name for o in overrides):
        return True
    # The ini values as read: pytest >= 9 keeps them in ``_inicfg`` (its public
    # ``inicfg`` is deprecated there); pytest 8 in ``inicfg``
    # (https://github.com/pytest-dev/pytest/blob/main/src/_pytest/config/__init__.py).
    values = getattr(config, "_inicfg", None)
    if values is None:
        values = getattr(config, "inicfg", {})
    return name in values


def _async_mode_chosen(config: pytest.Config) -> bool:
    return _mode_is_set(config, "asyncio_mode") or _mode_is_set(config, "anyio_mode")


def _claimed(collector: pytest.Module | pytest.Class, obj: Any) -> bool:
    """Whether a plugin the project uses already runs this coroutine test."""
    marks = [*collector.iter_markers(), *getattr(obj, "pytestmark", ())]
    for mark in marks:
        if mark.name in _ASYNC_MARKERS:
            return True
        if mark.name == "usefixtures" and "anyio_backend" in mark.args:
            return True
    return "anyio_backend" in inspect.signature(obj).parameters


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> None:
    """Hand unclaimed coroutine tests to anyio (see the module docstring)."""
    if not collector.istestfunction(obj, name) or _async_mode_chosen(collector.config):
        return
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)
    if not inspect.iscoroutinefunction(inner) or _claimed(collector, obj):
        return
    plugins = collector.config.pluginmanager
    if plugins.has_plugin("anyio"):
        pytest.mark.usefixtures("anyio_backend")(obj)
        pytest.mark.parametrize("anyio_backend", ["asyncio"], scope="module")(obj)
    elif plugins.has_plugin("asyncio"):
        pytest.mark.asyncio(obj)


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
