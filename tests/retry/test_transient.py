"""CockroachDB's transient errors: 58C00, 58C01, 53300; and timeouts that fire.

The server-side failures are real: PL/pgSQL raises ``58C00`` on its first
call (its state kept in a sequence made beforehand: ``nextval`` is not undone
by the rollback of the failed attempt, a table row would be), or at COMMIT
through a deferred constraint trigger. The classification of each code
is checked against the messages CockroachDB sends, recorded in
tests/crdb_facts/errors_batch3.json.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import (
    AmbiguousCommitError,
    RetryPolicy,
    retry_stats,
    run_transaction,
)
from sqlalchemy_crdb_async.retry.classify import ErrorKind, classify_sqlstate
from tests.retry.support import FAST, count_rows

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from sqlalchemy_crdb_async import RetryEvent

FACTS = json.loads(
    (Path(__file__).parent.parent / "crdb_facts" / "errors_batch3.json").read_text()
)

SETUP = [
    "CREATE TABLE IF NOT EXISTS transient_done (id serial PRIMARY KEY, note text)",
    # fail_first(seq, code): raise `code` on the first call counted by `seq`
    # (a sequence: not rolled back with the attempt).
    """
    CREATE OR REPLACE FUNCTION fail_first(seq text, code text) RETURNS int
    LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval(seq::regclass) = 1 THEN
        RAISE EXCEPTION 'key range id:7 is unavailable: forced by fail_first'
          USING ERRCODE = code;
      END IF;
      RETURN 1;
    END $$
    """,
    """
    CREATE TABLE IF NOT EXISTS transient_commit (id serial PRIMARY KEY, code text)
    """,
    """
    CREATE OR REPLACE FUNCTION transient_commit_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'forced at COMMIT' USING ERRCODE = NEW.code;
    END $$
    """,
    "DROP TRIGGER IF EXISTS transient_commit_deferred ON transient_commit",
    """
    CREATE CONSTRAINT TRIGGER transient_commit_deferred AFTER INSERT
    ON transient_commit DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION transient_commit_check()
    """,
]


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        for statement in SETUP:
            await conn.exec_driver_sql(statement)
    return engine


@pytest.mark.parametrize(
    ("code", "reason"),
    [("58C00", "RANGE_UNAVAILABLE"), ("58C01", "INTERNAL_CONNECTION_FAILURE")],
)
async def test_a_transient_error_is_retried_and_commits_once(
    db: AsyncEngine, code: str, reason: str
) -> None:
    name = f"once_{code.lower()}"
    async with db.begin() as conn:
        await conn.exec_driver_sql(f"DROP SEQUENCE IF EXISTS {name}")
        await conn.exec_driver_sql(f"CREATE SEQUENCE {name}")
    calls = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await conn.exec_driver_sql(
            f"INSERT INTO transient_done (note) VALUES ('{name}')"
        )
        await conn.exec_driver_sql(f"SELECT fail_first('{name}', '{code}')")

    retry_stats(db, reset=True)
    await run_transaction(db, work, policy=FAST)
    assert calls == 2
    assert await count_rows(db, "transient_done", f"note = '{name}'") == 1
    stats = retry_stats(db)
    assert stats.commits == 1
    assert stats.retries_by_sqlstate.get(code) == 1
    assert stats.retries_by_reason.get(reason) == 1


async def test_a_transient_error_at_commit_is_ambiguous(db: AsyncEngine) -> None:
    async def work(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(
            "INSERT INTO transient_commit (code) VALUES ('58C00')"
        )

    with pytest.raises(AmbiguousCommitError) as caught:
        await run_transaction(db, work, policy=FAST)
    assert "58C00" in str(caught.value)


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("SET LOCAL statement_timeout = 50; SELECT pg_sleep(5)", "57014"),
        ("SET LOCAL lock_timeout = 50; LOCK TABLE transient_done", "55P03"),
    ],
)
async def test_a_timeout_that_fires_is_not_retried(
    db: AsyncEngine, statement: str, code: str
) -> None:
    holder = await db.connect()
    await holder.begin()
    await holder.exec_driver_sql("LOCK TABLE transient_done")
    calls = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        for part in statement.split("; "):
            await conn.exec_driver_sql(part)

    try:
        with pytest.raises(exc.DBAPIError) as caught:
            await run_transaction(db, work, policy=RetryPolicy(deadline_s=30))
    finally:
        await holder.rollback()
        await holder.close()
    assert calls == 1
    assert getattr(caught.value.orig, "sqlstate", None) == code


def _recorded_message(key: str) -> str:
    record = FACTS[key]
    if "message" in record:
        return str(record["message"])
    return str(record["eras"][0]["format"])


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("58C00_range_unavailable", "58C00"),
        ("58C01_internal_connection_failure", "58C01"),
        ("53300_too_many_connections", "53300"),
    ],
)
def test_recorded_transient_errors_retry_before_commit_only(
    key: str, code: str
) -> None:
    """Recorded CockroachDB answers (errors_batch3.json) through the classifier."""
    assert FACTS[key]["sqlstate"] == code
    message = _recorded_message(key)
    before = classify_sqlstate(code, message, commit_sent=False)
    after = classify_sqlstate(code, message, commit_sent=True)
    assert before.kind is ErrorKind.RETRY
    assert before.transient
    assert after.kind is ErrorKind.AMBIGUOUS


@pytest.mark.parametrize("code", ["57014", "55P03"])
def test_recorded_timeouts_are_raised(code: str) -> None:
    assert classify_sqlstate(code, commit_sent=False).kind is ErrorKind.RAISE


async def test_too_many_connections_at_connect_is_retried(
    db: AsyncEngine, crdb_url: URL
) -> None:
    """53300 at connect, from the real server: a role over its connection limit
    (PostgreSQL sends the same SQLSTATE for a role's CONNECTION LIMIT)."""
    role = "i19_limited"
    async with db.begin() as conn:
        await conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        await conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    refused = asyncio.Event()
    limited = create_async_engine(crdb_url.set(username=role, password=None))

    async def lift_the_limit() -> None:
        await refused.wait()
        async with db.begin() as conn:
            await conn.exec_driver_sql(f"ALTER ROLE {role} CONNECTION LIMIT -1")

    async def read(conn: AsyncConnection) -> int:
        return int((await conn.exec_driver_sql("SELECT 1")).scalar_one())

    def on_retry(event: RetryEvent) -> None:
        if event.sqlstate == "53300":
            refused.set()

    lifter = asyncio.ensure_future(lift_the_limit())
    try:
        retry_stats(limited, reset=True)
        policy = RetryPolicy(
            deadline_s=30, initial_backoff_s=0.05, max_backoff_s=0.2, on_retry=on_retry
        )
        assert await run_transaction(limited, read, policy=policy) == 1
        stats = retry_stats(limited)
        assert stats.retries_by_reason.get("TOO_MANY_CONNECTIONS", 0) >= 1
        assert stats.commits == 1
    finally:
        await lifter
        await limited.dispose()
        async with db.begin() as conn:
            await conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
