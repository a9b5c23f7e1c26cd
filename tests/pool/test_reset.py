"""The session reset on return: which statements, and what a refusal does.

CockroachDB's reset statements are all PostgreSQL statements too, with the same
meaning for what is checked here (``RESET ALL`` leaves the role alone on both:
cockroach logic test ``pkg/sql/logictest/testdata/logic_test/set_role``), so
these tests run CockroachDB's list against the embedded server by telling the
pool it talks to CockroachDB.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import PoolSettings
from sqlalchemy_crdb_async.pool._reset import (
    CRDB_RESET,
    FOLLOWER_READS_OFF,
    SessionReset,
)
from tests import facts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

ROLE = "crdb_async_reset_probe"


@pytest.fixture
async def crdb_reset_engine(
    crdb_url: URL, engine: AsyncEngine
) -> AsyncIterator[AsyncEngine]:
    """One pooled connection whose pool sends CockroachDB's reset."""
    if engine.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip("runs CockroachDB's reset on PostgreSQL; on CockroachDB as is")
    async with engine.connect() as conn:
        await conn.execute(text(f"DROP ROLE IF EXISTS {ROLE}"))
        await conn.execute(text(f"CREATE ROLE {ROLE}"))
        await conn.commit()
    eng = create_async_engine(crdb_url, **PoolSettings(pool_size=1).engine_kwargs())
    eng.pool._is_cockroachdb = lambda: True  # type: ignore[attr-defined]
    try:
        yield eng
    finally:
        await eng.dispose()
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP ROLE IF EXISTS {ROLE}"))
            await conn.commit()


async def _current_user(eng: AsyncEngine, set_role: bool = False) -> str:
    async with eng.connect() as conn:
        if set_role:
            await conn.execute(text(f"SET ROLE {ROLE}"))
        user = (await conn.execute(text("SELECT current_user"))).scalar_one()
        await conn.commit()
    return str(user)


def test_crdb_reset_resets_the_role() -> None:
    assert "RESET ROLE" in CRDB_RESET
    assert CRDB_RESET.index("RESET ROLE") < CRDB_RESET.index("RESET ALL")


async def test_a_borrowers_role_does_not_reach_the_next(
    crdb_reset_engine: AsyncEngine,
) -> None:
    login = await _current_user(crdb_reset_engine)
    assert await _current_user(crdb_reset_engine, set_role=True) == ROLE
    assert await _current_user(crdb_reset_engine) == login


def _use(eng: AsyncEngine, reset: SessionReset) -> None:
    eng.pool._session_reset = reset  # type: ignore[attr-defined]


async def test_a_statement_the_server_lacks_is_left_out_alone(
    crdb_reset_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # DISCARD NONSENSE: a syntax error (42601), as older CockroachDB versions
    # answer DISCARD TEMP / SEQUENCES (tests/crdb_facts/errors_more.json).
    reset = SessionReset(("CLOSE ALL", "RESET ROLE", "RESET ALL", "DISCARD NONSENSE"))
    _use(crdb_reset_engine, reset)
    login = await _current_user(crdb_reset_engine)
    with caplog.at_level(logging.WARNING):
        assert await _current_user(crdb_reset_engine, set_role=True) == ROLE
    assert reset.refused == {"DISCARD NONSENSE"}
    assert "DISCARD NONSENSE" in caplog.text
    # the rest of the reset still ran, and keeps running
    assert await _current_user(crdb_reset_engine) == login
    assert await _current_user(crdb_reset_engine, set_role=True) == ROLE
    assert await _current_user(crdb_reset_engine) == login
    assert reset.statements(True) == "CLOSE ALL; RESET ROLE; RESET ALL"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1 / 0",  # any refusal that is not "the server lacks it"
        "RESET ROLE",  # required: never left out, whatever the code
    ],
)
async def test_other_refusals_downgrade_nothing(
    crdb_reset_engine: AsyncEngine, statement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy_crdb_async.pool import _reset

    statements = ("RESET ROLE", "RESET ALL", statement)
    if statement == "RESET ROLE":
        # a required statement refused with a "lacks it" code: still kept
        statements = ("RESET ROLE x", "RESET ALL")
        monkeypatch.setattr(_reset, "CRDB_REQUIRED", frozenset({"RESET ROLE x"}))
    reset = SessionReset(statements)
    _use(crdb_reset_engine, reset)
    first: Any = None
    for _ in range(2):
        async with crdb_reset_engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            first = first or pid
            await conn.commit()
    # refused each time: the connection was discarded, nothing left out
    assert reset.refused == set()
    assert pid != first


def test_follower_reads_are_turned_off_before_anything_else() -> None:
    # RESET ALL fails in the read-only AS OF SYSTEM TIME transaction that
    # follower reads make of every implicit one (tests/crdb_facts/session_reset.md)
    assert CRDB_RESET[0] == FOLLOWER_READS_OFF
    assert CRDB_RESET.index(FOLLOWER_READS_OFF) < CRDB_RESET.index("RESET ALL")


#: The recorded refusal: RESET ALL with default_transaction_use_follower_reads
#: on, before https://github.com/cockroachdb/cockroach/pull/148770
#: (tests/crdb_facts/session_reset.md,
#: https://github.com/cockroachdb/cockroach/issues/124150).
FOLLOWER_READS_REFUSAL = {
    "C": "42601",
    "M": "AS OF SYSTEM TIME specified with READ WRITE mode",
}


class FollowerReadsSession:
    """Stands where the pool's asyncpg connection does, and answers each
    message as the recorded CockroachDB session with follower reads on does:
    a message containing RESET ALL, sent while follower reads are on, is
    refused with the recorded error; any other statement succeeds. No wire
    protocol: only the pool's reset code runs against it."""

    def __init__(self) -> None:
        self.follower_reads = True
        self.sent: list[str] = []

    async def execute(self, query: str, *args: Any, timeout: Any = None) -> str:
        self.sent.append(query)
        if self.follower_reads and "RESET ALL" in query:
            raise asyncpg.PostgresError.new(FOLLOWER_READS_REFUSAL)
        if query == FOLLOWER_READS_OFF:
            self.follower_reads = False
        if query == "RESET ALL":
            self.follower_reads = True  # back to the role's default (say, on)
        return "OK"

    def is_in_transaction(self) -> bool:
        return False


def test_session_reset_records_the_follower_reads_refusal() -> None:
    text_ = (facts.FACTS_DIR / "session_reset.md").read_text(encoding="utf-8")
    assert FOLLOWER_READS_REFUSAL["M"] in text_
    assert "42601" in text_


async def test_reset_with_follower_reads_on_keeps_the_connection() -> None:
    session = FollowerReadsSession()
    reset = SessionReset()
    for _ in range(2):  # the role default turns them on again each time
        session.sent.clear()
        await reset.execute_async(session, True)
        # the whole reset once (refused), then one by one: follower reads
        # off in a transaction of its own, RESET ALL after it succeeds
        assert session.sent[0] == "; ".join(CRDB_RESET)
        assert session.sent[1:] == list(CRDB_RESET)
    # nothing was left out, and nothing about combining changed
    assert reset.refused == set()
    assert reset.combine is True


async def test_a_transient_combined_failure_keeps_combining(crdb_url: URL) -> None:
    eng = create_async_engine(crdb_url, **PoolSettings(pool_size=1).engine_kwargs())
    reset = eng.sync_engine.pool._session_reset  # type: ignore[attr-defined]
    real = reset.statements
    calls = 0

    def fail_first(is_cockroachdb: bool) -> str:
        nonlocal calls
        calls += 1
        # division by zero (22012): not "the server refuses this for good"
        return "SELECT 1/0" if calls == 1 else real(is_cockroachdb)

    reset.statements = fail_first
    try:
        async with eng.connect() as conn:
            await conn.execute(text("SET search_path = leaked"))
            await conn.commit()
            await conn.execute(text("SELECT 1"))  # closed in a transaction
        assert calls >= 2  # the reset went out again on its own
        assert reset.combine is True
        async with eng.connect() as conn:
            assert await conn.scalar(text("SHOW search_path")) != "leaked"
    finally:
        await eng.dispose()
