"""sqlalchemy_crdb_async.sync.run_transaction with psycopg 3 and psycopg2."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from sqlalchemy_crdb_async import RetriesExhaustedError, retry_stats
from sqlalchemy_crdb_async.sync import ChainTransaction, run_transaction
from tests.retry.support import FAST, SETUP

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import URL, Connection, Engine

_ids = itertools.count()


@pytest.fixture(scope="module", params=["psycopg", "psycopg2"])
def sync_engine(request: pytest.FixtureRequest, crdb_url: URL) -> Iterator[Engine]:
    eng = create_engine(crdb_url.set(drivername=f"cockroachdb+{request.param}"))
    with eng.begin() as conn:
        for statement in SETUP:
            conn.exec_driver_sql(statement)
    try:
        yield eng
    finally:
        eng.dispose()


def _seq(engine: Engine) -> str:
    name = f"sync_counter_{next(_ids)}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SEQUENCE {name}")
    return name


def _count(engine: Engine, seq: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM commit_probe WHERE seq = '{seq}'"
            ).scalar_one()
        )


@contextmanager
def _engine(engine: Engine) -> Iterator[Any]:
    yield engine


@contextmanager
def _connection(engine: Engine) -> Iterator[Any]:
    with engine.connect() as conn:
        yield conn


@contextmanager
def _sessionmaker(engine: Engine) -> Iterator[Any]:
    yield sessionmaker(engine)


@contextmanager
def _session(engine: Engine) -> Iterator[Any]:
    with Session(engine) as session:
        yield session


@pytest.fixture(
    params=[
        pytest.param(_engine, id="engine"),
        pytest.param(_connection, id="connection"),
        pytest.param(_sessionmaker, id="sessionmaker"),
        pytest.param(_session, id="session"),
    ]
)
def target(request: pytest.FixtureRequest, sync_engine: Engine) -> Iterator[Any]:
    """Each kind of target the sync run_transaction accepts."""
    with request.param(sync_engine) as made:
        yield made


def _conn(handle: Connection | Session) -> Connection:
    return handle.connection() if isinstance(handle, Session) else handle


def test_retries_40001_at_a_statement_and_at_commit(
    sync_engine: Engine, target: Any
) -> None:
    seq, stmt_seq = _seq(sync_engine), _seq(sync_engine)
    calls = 0

    def work(handle: Any) -> str:
        nonlocal calls
        calls += 1
        conn = _conn(handle)
        conn.exec_driver_sql(
            f"INSERT INTO commit_probe (seq, failures, note) VALUES ('{seq}', 1, 's')"
        )
        conn.exec_driver_sql(f"SELECT fail_times(1, '{stmt_seq}')")
        return "ok"

    before = retry_stats(sync_engine)
    assert run_transaction(target, work, policy=FAST) == "ok"
    assert calls == 3  # statement failure, COMMIT failure, success
    assert _count(sync_engine, seq) == 1
    assert retry_stats(sync_engine).retries - before.retries == 2


def test_older_keywords_max_retries_and_max_backoff(sync_engine: Engine) -> None:
    seq = _seq(sync_engine)
    calls = 0

    def work(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        conn.exec_driver_sql(f"SELECT fail_times(10, '{seq}')")

    with pytest.raises(RetriesExhaustedError) as info:
        run_transaction(sync_engine, work, max_retries=2, max_backoff=0)
    assert calls == 3
    assert info.value.attempts == 3
    assert info.value.orig is not None


def test_older_unlimited_retries_retry_past_the_default_limit(
    sync_engine: Engine,
) -> None:
    seq = _seq(sync_engine)
    calls = 0

    def work(conn: Connection) -> str:
        nonlocal calls
        calls += 1
        conn.exec_driver_sql(f"SELECT fail_times(12, '{seq}')")
        return "ok"

    # the default policy stops after 10 attempts; None is the older "no limit"
    assert run_transaction(sync_engine, work, max_retries=None, max_backoff=0) == "ok"
    assert calls == 13


def test_older_unlimited_retries_are_bounded_by_a_deadline(
    sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy_crdb_async.retry import sync as retry_sync

    monkeypatch.setattr(retry_sync, "UNLIMITED_RETRIES_DEADLINE_S", 1e-9)
    seq = _seq(sync_engine)

    def work(conn: Connection) -> None:
        conn.exec_driver_sql(f"SELECT fail_times(1000, '{seq}')")

    with pytest.raises(RetriesExhaustedError) as info:
        run_transaction(sync_engine, work, max_retries=None, max_backoff=0)
    assert info.value.attempts == 1


@pytest.mark.parametrize("restart", [True, False])
def test_older_use_cockroach_restart_is_accepted(
    sync_engine: Engine, target: Any, restart: bool
) -> None:
    """Either value runs each retry as a new transaction (documented)."""
    seq = _seq(sync_engine)
    calls = 0

    def work(handle: Any) -> int:
        nonlocal calls
        calls += 1
        _conn(handle).exec_driver_sql(f"SELECT fail_times(1, '{seq}')")
        return calls

    assert run_transaction(target, work, use_cockroach_restart=restart) == 2
    with pytest.raises(sa_exc.ArgumentError, match="use_cockroach_restart"):
        run_transaction(target, work, use_cockroach_restart="yes")  # type: ignore[call-overload]


def test_older_inject_error_needs_cockroachdb_here(
    sync_engine: Engine, crdb_server: Any
) -> None:
    if crdb_server.is_cockroachdb:
        pytest.skip("checks the PostgreSQL refusal")
    with pytest.raises(sa_exc.ArgumentError, match="needs CockroachDB"):
        run_transaction(sync_engine, lambda c: None, inject_error=True)
    with pytest.raises(sa_exc.ArgumentError, match="needs CockroachDB"):
        run_transaction(sync_engine, lambda c: None, max_retries=3, inject_error=True)


@pytest.mark.crdb_only("inject_retry_errors_enabled")
def test_older_inject_error_on_cockroachdb(sync_engine: Engine) -> None:
    calls = 0

    def work(conn: Connection) -> int:
        nonlocal calls
        calls += 1
        return int(conn.exec_driver_sql("SELECT 1").scalar_one())

    assert run_transaction(sync_engine, work, inject_error=True, max_backoff=0) == 1
    assert calls == 4  # three injected 40001s, then a clean attempt


def test_chain_transaction_runs_in_the_same_transaction(
    sync_engine: Engine, target: Any
) -> None:
    seq, fail_seq = _seq(sync_engine), _seq(sync_engine)
    attempts = 0

    def insert(note: str) -> Any:
        def step(handle: Any) -> str:
            _conn(handle).exec_driver_sql(
                "INSERT INTO commit_probe (seq, failures, note) "
                f"VALUES ('{seq}', 0, '{note}')"
            )
            return note

        return step

    def fail_once(handle: Any) -> str:
        _conn(handle).exec_driver_sql(f"SELECT fail_times(1, '{fail_seq}')")
        return "c"

    def first(handle: Any) -> ChainTransaction:
        nonlocal attempts
        attempts += 1
        insert("a")(handle)
        return ChainTransaction([insert("b"), fail_once])

    result = run_transaction(target, first, policy=FAST)
    assert isinstance(result, ChainTransaction)
    assert result.results == ["b", "c"]
    assert attempts == 2  # the chain's 40001 retried the whole transaction
    assert _count(sync_engine, seq) == 2  # a and b, once each


def test_policy_and_older_keywords_together_are_refused(sync_engine: Engine) -> None:
    with pytest.raises(sa_exc.ArgumentError, match="not both"):
        run_transaction(sync_engine, lambda c: None, max_retries=1, policy=FAST)


def test_non_retryable_error_propagates_once(sync_engine: Engine) -> None:
    calls = 0

    def work(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        conn.exec_driver_sql("INSERT INTO kv VALUES (5, 1), (5, 2)")

    with pytest.raises(sa_exc.IntegrityError):
        run_transaction(sync_engine, work, policy=FAST)
    assert calls == 1


def test_async_fn_is_refused(sync_engine: Engine) -> None:
    async def work(conn: Connection) -> None:
        return None

    with pytest.raises(TypeError, match="returned an awaitable"):
        run_transaction(sync_engine, work)  # type: ignore[arg-type]
