"""retrying_session: the body runs once; statements are replayed on a retry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Integer, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import (
    ReplayMismatchError,
    RetryPolicy,
    retry_stats,
    retrying_session,
    run_transaction,
)
from tests.retry.support import FAST, count_rows, install, new_counter

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


class Base(DeclarativeBase):
    pass


class KV(Base):
    __tablename__ = "kv"
    k: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    v: Mapped[int] = mapped_column(Integer)


@pytest.fixture
async def db(db: AsyncEngine) -> AsyncEngine:
    """The retry tests' ``db`` (tests/retry/conftest.py), kv at its first rows."""
    async with db.begin() as conn:
        await conn.exec_driver_sql("DELETE FROM kv")
        await conn.exec_driver_sql("INSERT INTO kv VALUES (1, 100), (2, 200)")
    return db


async def test_body_runs_once_when_a_statement_fails_and_replay_matches(
    db: AsyncEngine,
) -> None:
    seq = await new_counter(db)
    Session = async_sessionmaker(db, expire_on_commit=False)
    runs = 0
    before = retry_stats(db)
    async with retrying_session(Session, policy=FAST) as session:
        runs += 1
        one = await session.get(KV, 1)
        assert one is not None
        one.v += 1
        await session.flush()
        # fails twice with 40001, then succeeds: invisible to the body
        value = (
            await session.execute(text(f"SELECT fail_times(2, '{seq}')"))
        ).scalar_one()
        two = await session.get(KV, 2)
        assert two is not None
        two.v += value
    assert runs == 1
    after = retry_stats(db)
    assert after.replays - before.replays == 2
    assert after.retries - before.retries == 2
    assert after.commits - before.commits == 1
    async with db.connect() as conn:
        rows = (await conn.exec_driver_sql("SELECT k, v FROM kv ORDER BY k")).all()
    assert [tuple(r) for r in rows] == [(1, 101), (2, 201)]


async def test_body_runs_once_when_commit_fails_and_replay_matches(
    db: AsyncEngine,
) -> None:
    seq = await new_counter(db)
    runs = 0
    before = retry_stats(db)
    async with retrying_session(db, policy=FAST) as session:
        runs += 1
        rows = (await session.execute(select(KV).order_by(KV.k))).scalars().all()
        rows[0].v = 7
        await session.execute(
            text(
                "INSERT INTO commit_probe (seq, failures, note) "
                f"VALUES ('{seq}', 2, 'replay')"
            )
        )
    assert runs == 1
    assert retry_stats(db).replays - before.replays == 2
    assert await count_rows(db, "commit_probe", f"seq = '{seq}'") == 1
    assert await count_rows(db, "kv", "k = 1 AND v = 7") == 1


async def _change_row_elsewhere(db: AsyncEngine) -> None:
    async with db.begin() as other:
        await other.exec_driver_sql("UPDATE kv SET v = v + 1000 WHERE k = 2")


async def test_replay_mismatch_when_a_concurrent_writer_changed_what_was_read(
    db: AsyncEngine,
) -> None:
    seq = await new_counter(db)
    before = retry_stats(db)

    async def body() -> None:
        # lock_on_read=False: with the lock, the other writer would wait for us
        async with retrying_session(db, policy=FAST, lock_on_read=False) as session:
            two = await session.get(KV, 2)
            assert two is not None
            assert two.v == 200
            # another transaction commits a change to what we read ...
            await _change_row_elsewhere(db)
            # ... then we hit a retryable error: the replay reads v = 1200
            await session.execute(text(f"SELECT fail_times(1, '{seq}')"))

    with pytest.raises(ReplayMismatchError) as info:
        await body()
    assert info.value.orig is not None
    assert "statement 1 of 1" in str(info.value)
    assert retry_stats(db).replay_mismatches - before.replay_mismatches == 1
    # nothing of the body was committed
    assert await count_rows(db, "kv", "k = 2 AND v = 1200") == 1


async def test_run_transaction_reruns_the_body_after_a_mismatch(
    db: AsyncEngine,
) -> None:
    seq = await new_counter(db)
    runs = 0

    async def body(_: object) -> int:
        nonlocal runs
        runs += 1
        async with retrying_session(db, policy=FAST, lock_on_read=False) as session:
            two = await session.get(KV, 2)
            assert two is not None
            if runs == 1:
                await _change_row_elsewhere(db)
            await session.execute(text(f"SELECT fail_times(1, '{seq}')"))
            two.v += 1
            return two.v

    assert await run_transaction(db, body, policy=FAST) == 1201
    assert runs == 2


async def test_non_retryable_error_propagates_and_rolls_back(db: AsyncEngine) -> None:
    async def body() -> None:
        async with retrying_session(db) as session:
            session.add(KV(k=9, v=9))
            await session.flush()
            await session.execute(text("INSERT INTO kv VALUES (1, 1)"))

    with pytest.raises(sa_exc.IntegrityError, match="duplicate key") as info:
        await body()
    assert info.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    assert await count_rows(db, "kv", "k = 9") == 0


async def test_streamed_results_are_refused(db: AsyncEngine) -> None:
    async def body() -> None:
        async with retrying_session(db) as session:
            result = await session.stream(select(KV))
            await result.all()

    with pytest.raises(sa_exc.InvalidRequestError, match="cannot be fingerprinted"):
        await body()


async def test_bad_target_is_refused() -> None:
    session = retrying_session(object())  # type: ignore[arg-type]
    with pytest.raises(sa_exc.ArgumentError, match="async_sessionmaker or AsyncEngine"):
        await session.__aenter__()


async def test_session_is_usable_after_the_block(db: AsyncEngine) -> None:
    Session = async_sessionmaker(db, expire_on_commit=False)
    async with retrying_session(Session) as session:
        kv = await session.get(KV, 1)
    assert kv is not None
    assert kv.v == 100  # loaded in the block, readable after the commit
    assert isinstance(session, AsyncSession)


async def test_replay_with_psycopg_async(db: AsyncEngine, crdb_url: URL) -> None:
    # db: the two kv rows this test reads (not whatever an earlier test left)
    eng = create_async_engine(crdb_url.set(drivername="cockroachdb+psycopg_async"))
    try:
        await install(eng)
        seq = await new_counter(eng)
        runs = 0
        async with retrying_session(eng, policy=FAST) as session:
            runs += 1
            first = (
                await session.execute(text("SELECT k, v FROM kv ORDER BY k"))
            ).all()
            await session.execute(text(f"SELECT fail_times(2, '{seq}')"))
        assert runs == 1
        assert len(first) == 2
        assert retry_stats(eng).replays == 2
    finally:
        await eng.dispose()


@pytest.mark.crdb_only("inject_retry_errors_enabled")
async def test_injected_retry_errors_are_replayed_on_cockroachdb(
    db: AsyncEngine,
) -> None:
    runs = 0
    policy = RetryPolicy(inject_retry_errors=True, initial_backoff_s=0.001)
    before = retry_stats(db)
    async with retrying_session(db, policy=policy) as session:
        runs += 1
        await session.execute(text("SELECT v FROM kv WHERE k = 1"))
    assert runs == 1
    assert retry_stats(db).replays - before.replays >= 1


async def test_lock_on_read_locks_the_rows_the_session_read(db: AsyncEngine) -> None:
    # SELECT ... FOR UPDATE, as CockroachDB recommends for read-modify-write
    # (https://www.cockroachlabs.com/docs/stable/select-for-update): another
    # transaction cannot take the row the retrying session read (NOWAIT fails
    # at once with 55P03 instead of waiting), but can take one it did not read.
    async with retrying_session(db, policy=FAST) as session:
        two = await session.get(KV, 2)
        assert two is not None
        async with db.connect() as other:
            await other.exec_driver_sql(
                "SELECT v FROM kv WHERE k = 1 FOR UPDATE NOWAIT"
            )
            await other.rollback()
            with pytest.raises(sa_exc.DBAPIError) as info:
                await other.exec_driver_sql(
                    "SELECT v FROM kv WHERE k = 2 FOR UPDATE NOWAIT"
                )
            assert info.value.orig.sqlstate == "55P03"  # type: ignore[union-attr]
            await other.rollback()
        two.v += 1
    assert await count_rows(db, "kv", "k = 2 AND v = 201") == 1


async def test_lock_on_read_leaves_aggregates_and_text_alone(db: AsyncEngine) -> None:
    from sqlalchemy import func

    async with retrying_session(db, policy=FAST) as session:
        # FOR UPDATE is not allowed with aggregates: a lock here would fail
        total = (await session.execute(select(func.sum(KV.v)))).scalar_one()
        (await session.execute(text("SELECT v FROM kv WHERE k = 1"))).all()
    assert total == 300


async def test_a_new_engine_gets_the_replay_listeners_whatever_the_registry_says(
    crdb_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLAlchemy's event registry keys a target by id(): a dialect made at the
    # address of a dead one whose listener collection was still alive looked
    # as if it had the listeners (event.contains() said so), got none, and its
    # retrying_session statements went unrecorded (lock_on_read then locked a
    # read after SET TRANSACTION READ ONLY; CI's SQLAlchemy 2.0 run).
    # Simulated here by a registry that answers yes for everything.
    from sqlalchemy import event

    from sqlalchemy_crdb_async.retry import _loop, replay

    monkeypatch.setattr(event, "contains", lambda *args, **kw: True)
    engine = create_async_engine(crdb_url)
    try:
        replay._install(engine.sync_engine)
        assert replay._on_execute in engine.sync_engine.dialect.dispatch.do_execute
        async with engine.connect() as conn:
            _loop.mark_injected(conn.sync_connection, True)  # type: ignore[arg-type]
            pool_reset = engine.sync_engine.pool.dispatch.reset
            assert _loop._switch_off_on_return in pool_reset
            _loop.mark_injected(conn.sync_connection, False)  # type: ignore[arg-type]
    finally:
        await engine.dispose()
