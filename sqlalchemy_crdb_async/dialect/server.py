"""Which server is on the other end: CockroachDB or PostgreSQL, and which version.

The dialect runs ``SELECT version(), current_setting('server_version')`` once, on
the first connection of an engine, and hands both strings to
:func:`parse_server_version`. The result, a :class:`ServerInfo`, is what every
CockroachDB-only branch of this package is gated on::

    >>> info = parse_server_version(
    ...     "CockroachDB CCL v25.4.1 (x86_64-pc-linux-gnu, built 2025/11/03 "
    ...     "17:01:48, go1.23.12 X:nocoverageredesign)",
    ...     "13.0.0",
    ... )
    >>> info.flavor, info.crdb_version, info.pg_version
    ('cockroachdb', (25, 4, 1), (13, 0, 0))

CockroachDB's ``version()`` is built by ``pkg/build/info.go`` ``Short()``:
``CockroachDB <CCL|OSS> v<tag> (<platform>, built <time>, <go version>)``; the
real strings we test against are in ``tests/crdb_facts/version.json``. Its
``server_version`` setting is the PostgreSQL version it claims to speak (9.5.0
before v21.1, 13.0.0 since; https://github.com/cockroachdb/cockroach/pull/56248),
and that is what ``dialect.server_version_info`` reports on CockroachDB, so
SQLAlchemy's own PostgreSQL feature checks see the protocol level the server
really offers.

A string that is neither is an error that quotes it: guessing a default would
gate CockroachDB behaviour on nothing.

Support window
--------------
:data:`SUPPORTED_SINCE` is the oldest CockroachDB release this package
supports: the oldest release Cockroach Labs still supports in 2026 (v24.3,
LTS assistance until 2027-05-05; v25.2, v25.4, v26.2 and v26.3 are the others;
``tests/crdb_facts/versions.md``, from cockroachdb/docs
``src/current/_data/versions.csv``). :func:`check_support_window` runs at the
first connect of every engine:

- below :data:`CONNECTABLE_SINCE` (v22.1): :class:`~.errors.UnsupportedServerError`.
  Statements the dialect sends do not exist there: ``USING HASH WITH
  (bucket_count=N)``, ``RESET ALL``, ``CLOSE ALL`` arrived in v22.1
  (``tests/crdb_facts/grammar.md`` section 3, ``session_reset.md``).
- v22.1 up to v24.3: :class:`~.errors.UnsupportedServerWarning`, once per
  engine, and the dialect carries on. A warning rather than an error because
  CockroachDB upgrades one major release at a time with the application
  running: a client that refused the older nodes would break the upgrade that
  brings the cluster into the window.

Newer features are gated on ``dialect.crdb_at_least(...)`` where they are used.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Literal

from ..errors import (
    UnrecognizedServerError,
    UnsupportedServerError,
    UnsupportedServerWarning,
)

__all__ = [
    "CONNECTABLE_SINCE",
    "SUPPORTED_SINCE",
    "ServerFlavor",
    "ServerInfo",
    "check_support_window",
    "parse_server_version",
]

#: The oldest supported CockroachDB release (see "Support window" above).
SUPPORTED_SINCE = (24, 3, 0)
#: Below this, the dialect refuses to connect.
CONNECTABLE_SINCE = (22, 1, 0)

ServerFlavor = Literal["cockroachdb", "postgresql"]

# From tests/crdb_facts/version.json "derived_parse_regex", loosened where that file
# warns: the Go version may carry a suffix (" X:nocoverageredesign", v23.2+).
_CRDB_RE = re.compile(
    r"^CockroachDB (?P<distribution>CCL|OSS) "
    r"v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)(?P<suffix>-[0-9A-Za-z.\-]+)?"
    # Build details; absent where only the head of the string is reported
    # (tests/crdb_facts/version.json "partial_strings": "CockroachDB OSS v20.1.0").
    r"(?: \((?P<platform>[^,]+), built (?P<built>[^,]+), (?P<go>go[^)]*)\))?\s*$"
)
# PostgreSQL 15.18 (Debian ...) on ..., PostgreSQL 16.4 on ..., PostgreSQL 18beta1,
# PostgreSQL 17devel, EnterpriseDB 9.6.1.
_PG_RE = re.compile(
    r"^(?:PostgreSQL|EnterpriseDB) (?P<major>\d+)(?:\.(?P<minor>\d+))?"
    r"(?:\.(?P<patch>\d+))?(?P<suffix>(?:devel|alpha\d*|beta\d*|rc\d*))?\b"
)
_SERVER_VERSION_RE = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What the server said about itself on the first connection."""

    flavor: ServerFlavor
    version_string: str
    #: CockroachDB's own version, e.g. ``(25, 4, 1)``; None on PostgreSQL.
    crdb_version: tuple[int, int, int] | None
    #: The PostgreSQL version the server is (PostgreSQL) or speaks (CockroachDB).
    pg_version: tuple[int, ...]
    #: ``-alpha.2``, ``-beta.1``, ``devel``, ...; empty for a release build.
    prerelease: str = ""

    @property
    def is_cockroachdb(self) -> bool:
        return self.flavor == "cockroachdb"

    def describe(self) -> str:
        """A one-line label such as ``CockroachDB 25.4.1`` or ``PostgreSQL 15.18``."""
        if self.crdb_version is not None:
            numbers = ".".join(map(str, self.crdb_version))
            return f"CockroachDB {numbers}{self.prerelease}"
        return f"PostgreSQL {'.'.join(map(str, self.pg_version))}{self.prerelease}"


def parse_server_version(
    version_string: str, server_version: str | None = None
) -> ServerInfo:
    """Parse ``SELECT version()`` (and optionally ``server_version``).

    Raises :class:`~sqlalchemy_crdb_async.errors.UnrecognizedServerError`, quoting
    the string, when it is neither CockroachDB's nor PostgreSQL's format.
    """
    text = version_string.strip()
    m = _CRDB_RE.match(text)
    if m:
        crdb = (int(m["major"]), int(m["minor"]), int(m["patch"]))
        pg = _parse_pg_setting(server_version) if server_version else None
        if pg is None:
            # server_version is 9.5.0 before v21.1 and 13.0.0 from v21.1 on
            # (tests/crdb_facts/version.json "server_version").
            pg = (13, 0, 0) if crdb >= (21, 1, 0) else (9, 5, 0)
        return ServerInfo(
            flavor="cockroachdb",
            version_string=version_string,
            crdb_version=crdb,
            pg_version=pg,
            prerelease=m["suffix"] or "",
        )
    m = _PG_RE.match(text)
    if m:
        numbers = [int(x) for x in (m["major"], m["minor"], m["patch"]) if x]
        return ServerInfo(
            flavor="postgresql",
            version_string=version_string,
            crdb_version=None,
            pg_version=tuple(numbers),
            prerelease=m["suffix"] or "",
        )
    raise UnrecognizedServerError(
        f"Cannot tell which server this is from its version string {text!r}: "
        "expected 'CockroachDB CCL v<major>.<minor>.<patch> (...)' or "
        "'PostgreSQL <major>.<minor> ...'. Please report the string to "
        "sqlalchemy-crdb-async."
    )


def _parse_pg_setting(value: str) -> tuple[int, ...] | None:
    m = _SERVER_VERSION_RE.match(value.strip())
    if not m:
        return None
    return tuple(int(x) for x in m.groups() if x is not None)


def check_support_window(info: ServerInfo) -> None:
    """Refuse (below v22.1) or warn about (below v24.3) an old CockroachDB."""
    crdb = info.crdb_version
    if crdb is None or crdb >= SUPPORTED_SINCE:
        return
    supported = "v{}.{}".format(*SUPPORTED_SINCE)
    if crdb < CONNECTABLE_SINCE:
        raise UnsupportedServerError(
            f"{info.describe()} is too old for sqlalchemy-crdb-async: it lacks "
            "statements the dialect sends (RESET ALL, CLOSE ALL, USING HASH WITH "
            f"(bucket_count=N), all from v22.1). Upgrade the cluster to {supported} "
            "or later, the oldest release Cockroach Labs still supports."
        )
    warnings.warn(
        f"{info.describe()} is no longer supported by Cockroach Labs nor tested by "
        f"sqlalchemy-crdb-async (supported: {supported} and later). The dialect "
        "carries on, but upgrade the cluster.",
        UnsupportedServerWarning,
        stacklevel=2,
    )
