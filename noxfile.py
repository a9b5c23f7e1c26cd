"""Every check this project runs, in one place.

    nox -s tests        # the README's test command: unit, integration, reliability
                        # and the compliance suites, on this Python, newest SQLAlchemy
    nox -s matrix       # tests on every Python present x SQLAlchemy 2.0 / 2.1
    nox -s sqla20       # the main suite on SQLAlchemy 2.0 (this Python)
    nox -s lint         # ruff check + ruff format --check
    nox -s typecheck    # mypy --strict on the package and benchmarks
    nox -s bench -- --quick   # the benchmarks (not run by default)

The test server comes from the package's own pytest plugin: set CRDB_TEST_URL
to use a running CockroachDB; otherwise an embedded PostgreSQL is started.
"""

from __future__ import annotations

from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
SQLALCHEMY = {
    "2.0": "sqlalchemy[asyncio]>=2.0.38,<2.1",
    "2.1": "sqlalchemy[asyncio]>=2.1,<2.2",
}


def _pytest(session: nox.Session, *extra: str) -> None:
    """Run the main suite, then the compliance suites in their own pytest run
    (SQLAlchemy's plugin runs its own event loop and reads
    tests/compliance/test.cfg; pytest.ini there turns this package's plugin off).

    The compliance run happens even when the main suite failed, so one failure
    does not hide the other suite's result; the session fails if either did.
    """
    failed: list[str] = []
    try:
        session.run("python", "-m", "pytest", *extra, *session.posargs)
    except CommandFailed:
        failed.append("main suite")
    if Path("tests/compliance").is_dir():
        try:
            session.run(
                "python",
                "-m",
                "pytest",
                "-c",
                "tests/compliance/pytest.ini",
                "tests/compliance",
                *extra,
            )
        except CommandFailed:
            failed.append("compliance suites")
    if failed:
        session.error(f"failed: {', '.join(failed)}")


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test command: everything, on this interpreter."""
    session.install("-e", ".[test,bench]")
    _pytest(session)


@nox.session(python=PYTHONS)
@nox.parametrize("sqlalchemy", list(SQLALCHEMY))
def matrix(session: nox.Session, sqlalchemy: str) -> None:
    """Python x SQLAlchemy; 2.1 needs Python >= 3.11."""
    if sqlalchemy == "2.1" and session.python == "3.10":
        session.skip("SQLAlchemy 2.1 needs Python >= 3.11")
    session.install("-e", ".[test,bench]", SQLALCHEMY[sqlalchemy])
    _pytest(session)


@nox.session
def sqla20(session: nox.Session) -> None:
    """The main suite on SQLAlchemy 2.0, on this interpreter (run by CI)."""
    session.install("-e", ".[test,bench]", SQLALCHEMY["2.0"])
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test,bench]", "mypy>=1.13")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """``python -m benchmarks`` (pass options after ``--``, e.g. ``-- --quick``)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)
