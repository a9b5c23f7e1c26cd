"""The README's plugin example, as a new user runs it: the test file saved in an
empty folder, ``python -m pytest``, nothing configured. And a project that did
configure pytest-asyncio or anyio keeps its own way (the plugin changes nothing
there). Each case is a real ``python -m pytest`` in a fresh folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..readme import blocks, run_python

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from sqlalchemy_crdb_async.testing import TestServer

SNIPPET = next(b for b in blocks() if b.kind == "test file")


def run_pytest(
    folder: Path, *args: str, server: TestServer | None = None, append: str = ""
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest *args`` in ``folder`` with the README's test file in it
    (plus ``append``); with ``server``, the inner run uses it (``CRDB_TEST_URL``)
    instead of starting its own."""
    (folder / SNIPPET.file_name).write_text(SNIPPET.code + append)
    env: dict[str, str] = {}
    if server is not None:
        env["CRDB_TEST_URL"] = server.url.render_as_string(hide_password=False)
    return run_python(["-m", "pytest", *args], folder, env)


def test_the_readme_snippet_passes_in_an_empty_folder(tmp_path: Path) -> None:
    done = run_pytest(tmp_path)  # no options, no config, its own server
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert f"rootdir: {tmp_path}" in out
    assert "configfile" not in out, "the folder was meant to have no pytest config"
    assert "1 passed" in out, out


CONFIGURED_ASYNCIO = {
    "pytest.ini": (
        "pytest.ini",
        "[pytest]\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n",
        [],
    ),
    "pyproject.toml": (
        "pyproject.toml",
        '[tool.pytest.ini_options]\nasyncio_mode = "auto"\n'
        'asyncio_default_fixture_loop_scope = "function"\n',
        [],
    ),
    "-o": (None, "", ["-o", "asyncio_mode=auto"]),
    "--asyncio-mode": (None, "", ["--asyncio-mode=auto"]),
}


@pytest.mark.parametrize("how", sorted(CONFIGURED_ASYNCIO))
def test_a_project_with_pytest_asyncio_configured_is_left_alone(
    tmp_path: Path, how: str, crdb_server: TestServer
) -> None:
    name, content, args = CONFIGURED_ASYNCIO[how]
    if name:
        (tmp_path / name).write_text(content)
    done = run_pytest(tmp_path, "--setup-show", *args, server=crdb_server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    # pytest-asyncio ran it (its loop fixture), not anyio through this plugin.
    assert "anyio_backend" not in done.stdout, done.stdout
    assert "test_orders.py::test_orders " in done.stdout  # no [asyncio] id


def test_strict_pytest_asyncio_stays_strict(
    tmp_path: Path, crdb_server: TestServer
) -> None:
    """A project that chose strict mode marks its async tests itself; the
    plugin does not run an unmarked one behind its back."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = strict\n")
    done = run_pytest(tmp_path, server=crdb_server)
    assert done.returncode == 1
    assert "async def functions are not natively supported" in done.stdout


ANYIO_BACKEND_FIXTURE = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


@pytest.mark.parametrize("how", ["anyio_mode", "marker"])
def test_a_project_on_anyio_keeps_its_backend(
    tmp_path: Path, how: str, crdb_server: TestServer
) -> None:
    """Configured by ``anyio_mode``, or by marking the module: either way the
    project's own (function-scoped) ``anyio_backend`` runs the test."""
    (tmp_path / "conftest.py").write_text(ANYIO_BACKEND_FIXTURE)
    if how == "anyio_mode":
        (tmp_path / "pytest.ini").write_text("[pytest]\nanyio_mode = auto\n")
        append = ""
    else:
        append = "\n\nimport pytest  # noqa: E402\n\npytestmark = pytest.mark.anyio\n"
    done = run_pytest(tmp_path, "--setup-show", server=crdb_server, append=append)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "SETUP    F anyio_backend" in done.stdout, done.stdout
    assert "M anyio_backend['asyncio']" not in done.stdout
