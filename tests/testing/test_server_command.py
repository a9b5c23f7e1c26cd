"""``python -m sqlalchemy_crdb_async.server``, run as a user runs it: a real
process that starts a real server, prints its URL, and cleans up on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import server
from sqlalchemy_crdb_async.testing.embedded import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Bound on the server's start (initdb included) on a loaded machine.
START_TIMEOUT_S = 90.0
#: Bound on the stop after a signal (a fast shutdown, then removing files).
STOP_TIMEOUT_S = 60.0
LINE = re.compile(r"^DATABASE_URL=(cockroachdb\+asyncpg://\S+)\n$")


class Running:
    """A started ``python -m sqlalchemy_crdb_async.server`` and what it said."""

    def __init__(self, proc: subprocess.Popen[str], stderr: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr
        self.line = ""

    @property
    def url(self) -> str:
        match = LINE.match(self.line)
        assert match, f"not a DATABASE_URL line: {self.line!r}"
        return match.group(1)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def data_dir(self) -> Path | None:
        found = re.search(
            r"^data directory: (.+) \((kept|removed)", self.stderr(), re.M
        )
        return Path(found.group(1)) if found else None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the server command still ran {STOP_TIMEOUT_S:.0f} s after "
                f"{signal.Signals(sig).name}; stderr:\n{self.stderr()}"
            )


@contextlib.contextmanager
def command(tmp_path: Path, *args: str, wait_for_url: bool = True) -> Iterator[Running]:
    """Start the command; with ``wait_for_url``, read its first line (bounded).
    Whatever happens, the process is gone when the block exits."""
    stderr = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
    with (
        open(stderr, "w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "sqlalchemy_crdb_async.server", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=tmp_path,
        ) as proc,
    ):
        running = Running(proc, stderr)
        try:
            if wait_for_url:
                running.line = _read_line(running)
            yield running
        finally:
            if proc.poll() is None:
                proc.kill()  # its server dies with it (PR_SET_PDEATHSIG)
                proc.wait()


def _read_line(running: Running) -> str:
    assert running.proc.stdout is not None
    ready, _, _ = select.select([running.proc.stdout], [], [], START_TIMEOUT_S)
    if not ready:
        pytest.fail(
            f"no DATABASE_URL line within {START_TIMEOUT_S:.0f} s; "
            f"stderr:\n{running.stderr()}"
        )
    line = running.proc.stdout.readline()
    if not line:
        pytest.fail(
            f"the command exited ({running.proc.wait(STOP_TIMEOUT_S)}) before "
            f"printing a URL; stderr:\n{running.stderr()}"
        )
    return line


def query(url: str, sql: str) -> object:
    async def main() -> object:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(sa.text(sql))
                return result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()

    return asyncio.run(main())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_prints_a_url_that_works_and_cleans_up_on_a_signal(
    tmp_path: Path, sig: int
) -> None:
    with command(tmp_path) as running:
        assert LINE.match(running.line), running.line
        assert query(running.url, "SELECT 40 + 2") == 42
        data_dir = running.data_dir()
        if data_dir is not None:  # None: a CockroachDB node's in-memory store
            assert data_dir.is_dir()
        assert running.stop(sig) == 0, running.stderr()
        assert running.proc.stdout is not None
        assert running.proc.stdout.read() == "", "stdout has only the URL line"
    if data_dir is not None:
        assert not data_dir.exists(), f"{data_dir} is left behind"
    assert "stopped" in running.stderr()


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the server can use as root too (then PostgreSQL runs as the
    ``postgres`` user, which cannot enter pytest's 0700 ``tmp_path``)."""
    with tempfile.TemporaryDirectory(prefix="crdb-async-test-") as parent:
        os.chmod(parent, 0o755)
        yield Path(parent)


def test_data_dir_is_kept_and_reused(tmp_path: Path, reachable_dir: Path) -> None:
    data_dir = reachable_dir / "db"
    with command(tmp_path, "--data-dir", str(data_dir)) as running:
        query(running.url, "CREATE TABLE kept (n INT PRIMARY KEY)")
        query(running.url, "INSERT INTO kept VALUES (7)")
        assert running.stop() == 0, running.stderr()
    assert any(data_dir.iterdir()), f"{data_dir} was emptied"
    assert "kept on exit" in running.stderr() or not running.data_dir()
    with command(tmp_path, "--data-dir", str(data_dir)) as again:
        assert query(again.url, "SELECT n FROM kept") == 7
        assert again.stop() == 0, again.stderr()
    assert data_dir.is_dir()


def test_port_is_honoured(tmp_path: Path) -> None:
    port = free_port()
    with command(tmp_path, "--port", str(port)) as running:
        assert make_url(running.url).port == port
        assert query(running.url, "SELECT 1") == 1
        assert running.stop() == 0, running.stderr()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with command(tmp_path, "--port", str(port), wait_for_url=False) as running:
            assert running.proc.wait(START_TIMEOUT_S) == 1
            assert running.proc.stdout is not None
            assert running.proc.stdout.read() == ""
    assert f"port {port} on 127.0.0.1 is already in use" in running.stderr()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "x"], "'x' is not a port number; give an integer from 1 to 65535"),
        (["--port", "0"], "0 is not a port number"),
        (["--port", "70000"], "70000 is not a port number"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--data-dir"], "--data-dir: expected one argument"),
    ],
)
def test_bad_options_say_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        server.parse_args(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_data_dir_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit):
        server.parse_args(["--data-dir", str(tmp_path / "f")])
    assert "exists and is not a directory" in capsys.readouterr().err


def test_help_says_what_it_does() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sqlalchemy_crdb_async.server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=START_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    text = " ".join(out.split())
    for needed in (
        "'cockroach' binary when one is on PATH",
        "embedded PostgreSQL",
        "DATABASE_URL=cockroachdb+asyncpg://",
        "Ctrl-C or SIGTERM",
        "removes its data directory",
        "--port N listen on 127.0.0.1 port N",
        "--data-dir D keep the server's files in directory D and leave them there",
    ):
        assert needed in text, f"--help does not say {needed!r}:\n{out}"
