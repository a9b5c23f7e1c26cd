"""run_transaction and retrying() against real server errors, for every target."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from sqlalchemy_crdb_async import (
    RetriesExhaustedError,
    RetryEvent,
    RetryPolicy,
    retry_stats,
    retrying,
    run_transaction,
)
from tests.retry.support import (
    FAST,
    conn_of,
    count_rows,
    engine_target,
    fail_times,
    new_counter,
    sessionmaker_target,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
    )


async def test_run_transaction_retries_40001_at_a_statement(
    db: AsyncEngine, target: Any
) -> None:
    seq = await new_counter(db)
    calls = 0

    async def work(handle: Any) -> str:
        nonlocal calls
        calls += 1
        conn = await conn_of(handle)
        await conn.exec_driver_sql(
            "INSERT INTO commit_probe (seq, failures, note) "
            f"VALUES ('{seq}', 0, 'stmt')"
        )
        await fail_times(conn, 2, seq)
        return "done"

    before = retry_stats(db)
    assert await run_transaction(target, work, policy=FAST) == "done"
    after = retry_stats(db)
    assert calls == 3
    # the two failed attempts were rolled back: one row committed
    assert await count_rows(db, "commit_probe", f"seq = '{seq}'") == 1
    assert after.retries - before.retries == 2
    assert (
        after.retries_by_sqlstate["40001"] - before.retries_by_sqlstate.get("40001", 0)
        == 2
    )
    assert after.commits - before.commits == 1


async def test_run_transaction_retries_40001_at_commit(
    db: AsyncEngine, target: Any
) -> None:
    seq = await new_counter(db)
    calls = 0

    async def work(handle: Any) -> None:
        nonlocal calls
        calls += 1
        conn = await conn_of(handle)
        await conn.exec_driver_sql(
            f"INSERT INTO commit_probe (seq, failures, note) VALUES ('{seq}', 2, 'c')"
        )

    await run_transaction(target, work, policy=FAST)
    assert calls == 3
    assert await count_rows(db, "commit_probe", f"seq = '{seq}'") == 1


async def test_retrying_retries_at_statement_and_commit(
    db: AsyncEngine, target: Any
) -> None:
    seq, stmt_seq = await new_counter(db), await new_counter(db)
    numbers = []
    async for attempt in retrying(target, policy=FAST):
        async with attempt as handle:
            numbers.append(attempt.number)
            conn = await conn_of(handle)
            # first attempt fails at the statement, second at COMMIT
            await conn.exec_driver_sql(
                f"INSERT INTO commit_probe (seq, failures, note) "
                f"VALUES ('{seq}', 1, 'r')"
            )
            await fail_times(conn, 1, stmt_seq)
    assert numbers == [1, 2, 3]
    assert await count_rows(db, "commit_probe", f"seq = '{seq}'") == 1


@pytest.mark.parametrize(
    "target",
    [engine_target, sessionmaker_target],
    ids=["engine", "sessionmaker"],
    indirect=True,
)
async def test_non_retryable_error_propagates_unchanged_after_one_attempt(
    db: AsyncEngine, target: Any
) -> None:
    calls = 0

    async def work(handle: Any) -> None:
        nonlocal calls
        calls += 1
        conn = await conn_of(handle)
        await conn.exec_driver_sql("INSERT INTO kv VALUES (1, 1), (1, 2)")

    with pytest.raises(sa_exc.IntegrityError) as info:
        await run_transaction(target, work, policy=FAST)
    assert info.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    assert calls == 1


async def test_exhausted_retries_keep_the_last_error(db: AsyncEngine) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(
        max_attempts=3,
        initial_backoff_s=0.001,
        max_backoff_s=0.001,
        on_retry=events.append,
    )

    async def always(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(
            "DO $$ BEGIN RAISE EXCEPTION 'always' "
            "USING ERRCODE = 'serialization_failure'; END $$"
        )

    before = retry_stats(db)
    with pytest.raises(RetriesExhaustedError) as info:
        await run_transaction(db, always, policy=policy)
    err = info.value
    assert isinstance(err, sa_exc.OperationalError)  # old handlers still catch it
    assert err.attempts == 3
    assert isinstance(err.last_error, sa_exc.DBAPIError)
    assert err.__cause__ is err.last_error
    assert err.orig.sqlstate == "40001"  # type: ignore[union-attr]
    assert [e.attempt for e in events] == [1, 2]
    assert all(e.sqlstate == "40001" and e.reason is None for e in events)
    assert retry_stats(db).give_ups - before.give_ups == 1


async def test_deadline_stops_retrying(db: AsyncEngine) -> None:
    policy = RetryPolicy(
        max_attempts=100,
        initial_backoff_s=0.2,
        max_backoff_s=0.2,
        jitter="none",
        deadline_s=0.05,
    )

    async def always(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'deadlock_detected'; END $$"
        )

    with pytest.raises(RetriesExhaustedError, match=r"deadline_s=0\.05") as info:
        await run_transaction(db, always, policy=policy)
    assert info.value.attempts == 1


async def test_retrying_requires_async_with(db: AsyncEngine) -> None:
    with pytest.raises(RuntimeError, match="async with attempt as s"):
        async for _attempt in retrying(db):
            pass


async def test_run_transaction_rejects_sync_fn(db: AsyncEngine) -> None:
    def not_async(conn: AsyncConnection) -> int:
        return 1

    with pytest.raises(TypeError, match="fn must be an async function"):
        await run_transaction(db, not_async)  # type: ignore[arg-type]


async def test_connection_in_transaction_is_refused(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")  # autobegins
        with pytest.raises(sa_exc.InvalidRequestError, match="already has a trans"):
            await run_transaction(conn, _noop)


async def _noop(handle: Any) -> None:
    return None


def test_bad_target_is_refused() -> None:
    with pytest.raises(sa_exc.ArgumentError, match="target must be an AsyncEngine"):
        retrying(object())  # type: ignore[call-overload]


async def test_inject_retry_errors_needs_cockroachdb(
    db: AsyncEngine, crdb_server: Any
) -> None:
    if crdb_server.is_cockroachdb:
        pytest.skip("needs PostgreSQL: checks that it refuses inject_retry_errors")
    with pytest.raises(sa_exc.ArgumentError, match="needs CockroachDB"):
        await run_transaction(db, _noop, policy=RetryPolicy(inject_retry_errors=True))


@pytest.mark.crdb_only("inject_retry_errors_enabled")
async def test_inject_retry_errors_on_cockroachdb(db: AsyncEngine) -> None:
    calls = 0

    async def work(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        return int((await conn.exec_driver_sql("SELECT 1")).scalar_one())

    policy = RetryPolicy(inject_retry_errors=True, initial_backoff_s=0.001)
    assert await run_transaction(db, work, policy=policy) == 1
    assert calls == 4  # three injected 40001s, then a clean attempt


async def test_on_retry_error_ends_retries(db: AsyncEngine) -> None:
    class Stop(Exception):
        pass

    def stop(event: RetryEvent) -> None:
        raise Stop(event.attempt)

    seq = await new_counter(db)

    async def work(conn: AsyncConnection) -> None:
        await fail_times(conn, 5, seq)

    with pytest.raises(Stop):
        await run_transaction(db, work, policy=RetryPolicy(on_retry=stop))


async def test_otel_span_event_per_retry(db: AsyncEngine) -> None:
    trace = pytest.importorskip("opentelemetry.trace", reason="opentelemetry absent")
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="otel sdk absent")
    provider = sdk.TracerProvider()
    tracer = provider.get_tracer("test")
    seq = await new_counter(db)

    async def work(conn: AsyncConnection) -> None:
        await fail_times(conn, 2, seq)

    with tracer.start_as_current_span("txn") as span:
        await run_transaction(db, work, policy=FAST)
    names = [e.name for e in span.events]
    assert names == ["db.transaction.retry", "db.transaction.retry"]
    assert span.events[0].attributes["db.response.status_code"] == "40001"
    assert trace.get_current_span() is not span


async def test_cached_plan_error_is_retried(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE plan_t (a int)")
        await conn.exec_driver_sql("INSERT INTO plan_t VALUES (1)")
    calls = 0

    async def read(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        return len((await conn.execute(text("SELECT * FROM plan_t"))).all())

    before = retry_stats(db).retries_by_sqlstate.get("0A000", 0)
    async with db.connect() as conn:
        assert await run_transaction(conn, read) == 1  # prepares the statement
        # change the result type behind the prepared statement's back
        async with db.begin() as other:
            await other.exec_driver_sql("ALTER TABLE plan_t ADD COLUMN b int")
        assert await run_transaction(conn, read) == 1
    assert calls == 3
    assert retry_stats(db).retries_by_sqlstate.get("0A000", 0) - before == 1


async def test_each_retry_is_logged_at_debug(
    db: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    seq = await new_counter(db)

    async def work(conn: AsyncConnection) -> None:
        await fail_times(conn, 1, seq)

    with caplog.at_level(logging.DEBUG, logger="sqlalchemy_crdb_async.retry"):
        await run_transaction(db, work, policy=FAST)
    lines = [r.getMessage() for r in caplog.records if r.name.endswith(".retry")]
    assert len(lines) == 1
    assert "attempt 1 failed with SQLSTATE 40001" in lines[0]


def test_retry_stats_needs_an_engine() -> None:
    with pytest.raises(TypeError, match="takes an AsyncEngine or Engine, got str"):
        retry_stats("postgresql://")


@pytest.mark.parametrize("kind", ["engine", "connection", "sessionmaker", "session"])
def test_sync_target_fails_at_the_call_naming_the_sync_api(
    crdb_url: Any, kind: str
) -> None:
    """What a user of the older package gets after renaming only the import:
    a TypeError at the call, not a coroutine that silently never runs (this
    test is sync: nothing here could await one)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session, sessionmaker

    sync_engine = create_engine(crdb_url.set(drivername="cockroachdb+psycopg"))
    try:
        with sync_engine.connect() as conn, Session(sync_engine) as session:
            target = {
                "engine": sync_engine,
                "connection": conn,
                "sessionmaker": sessionmaker(sync_engine),
                "session": session,
            }[kind]
            name = "sqlalchemy_crdb_async.sync.run_transaction"
            with pytest.raises(TypeError, match=name):
                run_transaction(target, _noop)  # type: ignore[call-overload]
            with pytest.raises(TypeError, match=name):
                retrying(target)  # type: ignore[call-overload]
    finally:
        sync_engine.dispose()


def test_bad_target_fails_at_the_call() -> None:
    with pytest.raises(sa_exc.ArgumentError, match="target must be an AsyncEngine"):
        run_transaction(object(), _noop)  # type: ignore[call-overload]
