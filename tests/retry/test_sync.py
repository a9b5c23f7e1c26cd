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
from sqlalchemy_crdb_async.sync import run_transaction
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


def test_older_unlimited_retries_is_refused(sync_engine: Engine) -> None:
    with pytest.raises(sa_exc.ArgumentError, match="max_retries must be an integer"):
        run_transaction(sync_engine, lambda c: None, max_retries=None)


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
