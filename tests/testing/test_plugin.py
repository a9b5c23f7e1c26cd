"""The pytest plugin, as a user's test suite sees it (run in a nested pytest)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sqlalchemy_crdb_async.testing.plugin import crdb_only_reason

if TYPE_CHECKING:
    from sqlalchemy_crdb_async.testing import TestServer

pytest_plugins = ["pytester"]

USER_TESTS = """
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import sqlalchemy_crdb_async


async def test_gets_its_own_database(crdb_url):
    assert crdb_url.drivername == "cockroachdb+asyncpg"
    engine = create_async_engine(crdb_url)
    async with engine.connect() as conn:
        name = (await conn.execute(sa.text("SELECT current_database()"))).scalar()
    await engine.dispose()
    assert name == "t_test_user_suite"


@pytest.mark.crdb_only
def test_needs_cockroach():
    pass


@pytest.mark.crdb_only("AS OF SYSTEM TIME")
def test_needs_a_cockroach_feature():
    pass
"""


def test_user_suite_with_crdb_test_url(
    pytester: pytest.Pytester, crdb_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRDB_TEST_URL", crdb_server.url.render_as_string(False))
    pytester.makepyfile(test_user_suite=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "-o", "asyncio_mode=auto", "-rs"
    )
    result.stdout.fnmatch_lines(
        [
            "crdb-async test server candidate: CRDB_TEST_URL cockroachdb+asyncpg://*",
            "crdb-async test server: * (CRDB_TEST_URL)",
        ]
    )
    if crdb_server.is_cockroachdb:
        result.assert_outcomes(passed=3)
    else:
        result.assert_outcomes(passed=1, skipped=2)
        result.stdout.fnmatch_lines(
            [
                "*needs CockroachDB (running on PostgreSQL*",
                "*needs CockroachDB: AS OF SYSTEM TIME (running on PostgreSQL*",
            ],
            consecutive=False,
        )
    # The module's database was dropped afterwards.
    names = crdb_server._run(
        lambda conn: (
            conn.fetch("SELECT datname FROM pg_database")
            if not crdb_server.is_cockroachdb
            else conn.fetch("SELECT name AS datname FROM crdb_internal.databases")
        )
    )
    assert "t_test_user_suite" not in {r["datname"] for r in names}


def test_user_suite_header_names_the_embedded_candidate(
    pytester: pytest.Pytester, crdb_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if crdb_server.embedded is None:
        pytest.skip("needs the embedded PostgreSQL as the session's server")
    monkeypatch.delenv("CRDB_TEST_URL", raising=False)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:asyncio")
    result.stdout.fnmatch_lines(
        ["crdb-async test server candidate: embedded postgres (PostgreSQL) * from *"]
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        (pytest.mark.crdb_only.mark, "needs CockroachDB (running on X)"),
        (
            pytest.mark.crdb_only("hash-sharded indexes").mark,
            "needs CockroachDB: hash-sharded indexes (running on X)",
        ),
        (
            pytest.mark.crdb_only(feature="AS OF SYSTEM TIME").mark,
            "needs CockroachDB: AS OF SYSTEM TIME (running on X)",
        ),
    ],
)
def test_crdb_only_reason_names_the_feature(marker: pytest.Mark, reason: str) -> None:
    assert crdb_only_reason(marker, "X") == reason


def test_our_crdb_only_markers_name_their_feature() -> None:
    tests = Path(__file__).resolve().parent.parent
    bare = [
        f"{path.relative_to(tests)}:{n}"
        for path in sorted(tests.rglob("*.py"))
        if path.name != Path(__file__).name
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"\s*@pytest\.mark\.crdb_only\s*$", line)
    ]
    assert bare == [], 'write @pytest.mark.crdb_only("<CockroachDB feature>")'
