"""``timestampdiff`` stays ours: no clash with the older package's registration.

The older ``sqlalchemy-cockroachdb`` registers a SQLAlchemy generic function
named ``timestampdiff`` (its ``stmt_compiler.py``); a second registration of
that name warns ("GenericFunction 'timestampdiff' is already registered"),
which ``python -m benchmarks --quick`` printed first. Ours is not registered
(dialect/functions.py), so importing both, in either order, with warnings as
errors (all but this package's own ``DialectConflictWarning``, which says
that both claim the ``cockroachdb://`` schemes), succeeds. The older package
is installed with ``pip install --no-deps`` into a temporary folder (as the
benchmarks do, benchmarks/_harness/legacy.py) and imported in a fresh
interpreter each time, so this process's SQLAlchemy registry is untouched.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from benchmarks._harness import legacy

if TYPE_CHECKING:
    from pathlib import Path

OLDER = legacy.PACKAGE


@pytest.fixture(scope="module")
def older_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("older")
    # pip install --no-deps --target, as the benchmarks install it
    error = legacy._pip_install(target)
    if error is not None:
        pytest.skip(f"needs {OLDER} from the package index: {error}")
    return target


@pytest.mark.parametrize(
    "order",
    [
        ("sqlalchemy_cockroachdb", "sqlalchemy_crdb_async"),
        ("sqlalchemy_crdb_async", "sqlalchemy_cockroachdb"),
    ],
    ids=["older-first", "ours-first"],
)
def test_importing_both_packages_warns_nothing(
    older_package: Path, order: tuple[str, str]
) -> None:
    program = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"
        # our own, deliberate DialectConflictWarning (both claim cockroachdb://)
        "warnings.filterwarnings('ignore', message='sqlalchemy-cockroachdb .* "
        "is installed too')\n"
        f"sys.path.append({str(older_package)!r})\n"
        f"import {order[0]}\n"
        f"import {order[1]}\n"
        "import sqlalchemy as sa\n"
        "from sqlalchemy_crdb_async import timestampdiff\n"
        "t = sa.table('e', sa.column('s'), sa.column('f'))\n"
        "from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg\n"
        "sql = str(sa.select(timestampdiff('second', t.c.s, t.c.f)).compile(\n"
        "    dialect=CockroachDBDialect_asyncpg()))\n"
        "assert 'div(' in sql, sql\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
