"""pgvector_url in a user's suite (a nested pytest): the vector server starts
only when such a test runs, has the extension, and is gone after the session."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from sqlalchemy_crdb_async.testing import TestServer

pytest_plugins = ["pytester"]

USER_TESTS = """
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine


def test_plain():
    pass


async def test_vectors(pgvector_url, pgvector_server):
    engine = create_async_engine(pgvector_url)
    async with engine.connect() as conn:
        query = sa.text("SELECT vector_dims(CAST('[1,2,3]' AS VECTOR))")
        dims = (await conn.execute(query)).scalar()
    await engine.dispose()
    assert dims == 3
    embedded = pgvector_server.embedded
    print(f"VECTOR-SERVER-PID {embedded._process.pid if embedded else 0}")
"""


def _gone(pid: int, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_vector_server_is_started_for_vector_tests_and_stopped(
    pytester: pytest.Pytester, crdb_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRDB_TEST_URL", crdb_server.url.render_as_string(False))
    pytester.makepyfile(test_user_vectors=USER_TESTS)
    only_plain = pytester.runpytest_subprocess(
        "-p", "asyncio", "-o", "asyncio_mode=auto", "-k", "plain"
    )
    only_plain.assert_outcomes(passed=1, deselected=1)
    assert "crdb-async vector server" not in only_plain.stdout.str()
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "-o", "asyncio_mode=auto", "-s"
    )
    result.assert_outcomes(passed=2)
    pid = int(re.search(r"VECTOR-SERVER-PID (\d+)", result.stdout.str())[1])  # type: ignore[index]
    if crdb_server.has_vector_type():
        assert pid == 0  # the session's own server served the vector tests
        return
    result.stdout.fnmatch_lines(["crdb-async vector server: PostgreSQL * pgvector*"])
    assert _gone(pid), f"the vector server (pid {pid}) outlived the session"
