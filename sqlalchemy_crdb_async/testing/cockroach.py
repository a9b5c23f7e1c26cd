"""A throwaway single-node CockroachDB, when a ``cockroach`` binary is on PATH.

Started as the CockroachDB docs describe a local test node::

    cockroach start-single-node --insecure --store=type=mem,size=<size>
        --listen-addr=127.0.0.1:0 --http-addr=127.0.0.1:0
        --listening-url-file=<file>

Port 0 lets the node pick free ports; the SQL URL it listens on is read back
from ``--listening-url-file`` (https://www.cockroachlabs.com/docs/stable/cockroach-start-single-node).
The in-memory store needs no cleanup beyond the temporary directory.
``CockroachNode(binary, port=N)`` listens on ``127.0.0.1:N`` instead;
``CockroachNode(binary, store_dir=D)`` keeps the data on disk in D
(``--store=path=D``, same page), which ``stop()`` leaves in place and the next
start reuses.

No ``cockroach`` binary exists on this project's CI machines, so this module
runs only where a developer has one; it is exercised by the same suite.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._process import require_free_port, stop_process

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["CockroachNode", "find_cockroach"]

STARTUP_TIMEOUT_S = 90.0
SHUTDOWN_TIMEOUT_S = 30.0
STORE_SIZE = "2GiB"


def find_cockroach() -> str | None:
    """Path of a ``cockroach`` binary on PATH, or None."""
    return shutil.which("cockroach")


class CockroachNode:
    """One insecure in-memory CockroachDB node; see the module docstring."""

    def __init__(
        self,
        binary: str,
        store_size: str = STORE_SIZE,
        *,
        port: int | None = None,
        store_dir: Path | None = None,
    ) -> None:
        self.binary = binary
        self.store_size = store_size
        self.port = port
        self.store_dir = store_dir.resolve() if store_dir is not None else None
        self.url: str | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def version(self) -> str:
        out = subprocess.run(
            [self.binary, "version", "--build-tag"],
            check=True,
            capture_output=True,
            text=True,
        )
        return f"cockroach {out.stdout.strip()}"

    def start(self) -> CockroachNode:
        if self._process is not None:
            return self
        if self.port is not None:
            require_free_port(self.port)
        if self.store_dir is None:
            store = f"--store=type=mem,size={self.store_size}"
        else:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            store = f"--store=path={self.store_dir}"
        self._dir = Path(tempfile.mkdtemp(prefix="crdb-async-node-"))
        atexit.register(self.stop)
        url_file = self._dir / "url"
        log = open(self._dir / "cockroach.log", "ab")  # noqa: SIM115 - owned by the child
        with log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "start-single-node",
                    "--insecure",
                    store,
                    f"--listen-addr=127.0.0.1:{self.port or 0}",
                    "--http-addr=127.0.0.1:0",
                    f"--listening-url-file={url_file}",
                    f"--log-dir={self._dir / 'logs'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = (self._dir / "cockroach.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"cockroach exited at startup:\n{tail[-4000:]}")
            if url_file.is_file():
                text = url_file.read_text().strip()
                if text:
                    self.url = text
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"cockroach did not start in {STARTUP_TIMEOUT_S:.0f} s")

    def running(self) -> bool:
        """Whether the server process is alive (started and not exited)."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        proc, self._process = self._process, None
        stop_process(proc, signal.SIGTERM, SHUTDOWN_TIMEOUT_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> CockroachNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
