"""The fast path inside transactions, the retry helpers, and after a schema change.

Through a connection or session the statement joins its transaction (a
rollback undoes a write); ``run_transaction``, ``retrying_session`` and
``retrying`` bodies use it as they use ``execute()``, including the retry on a
40001. After ``ALTER TABLE`` changes a result type the prepared statement
goes stale (0A000 "cached plan must not change result type"): outside a
transaction it is prepared again and the read succeeds; inside one the error
is raised as the ordinary path raises it and ``run_transaction`` retries it
after clearing the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_crdb_async import (
    ErrorKind,
    PoolSettings,
    RetryPolicy,
    classify,
    prepared,
    retrying,
    retrying_session,
    run_transaction,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

tt = sa.Table(
    "fp_tx",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("v", sa.Integer),
)
READ = prepared(sa.select(tt).where(tt.c.id == sa.bindparam("id")))
ADD = prepared(
    tt.update()
    .where(tt.c.id == sa.bindparam("id"))
    .values(v=tt.c.v + sa.bindparam("n"))
    .returning(tt.c.v)
)
POLICY = RetryPolicy(max_attempts=5, initial_backoff_s=0.001, max_backoff_s=0.01)


@pytest.fixture(params=["default pool", "PoolSettings"])
async def eng(
    request: pytest.FixtureRequest, crdb_url: URL
) -> AsyncIterator[AsyncEngine]:
    kwargs: dict[str, Any] = {}
    if request.param == "PoolSettings":
        kwargs = PoolSettings(pool_size=2).engine_kwargs()
    engine = create_async_engine(crdb_url, **kwargs)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tt.metadata.drop_all)
            await conn.run_sync(tt.metadata.create_all)
            await conn.execute(tt.insert(), [{"id": 1, "v": 0}, {"id": 2, "v": 0}])
        yield engine
    finally:
        await engine.dispose()


async def _v(engine: AsyncEngine, key: int = 1) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(sa.select(tt.c.v).where(tt.c.id == key))


async def test_a_rollback_undoes_a_write_on_a_connection(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        assert await ADD.scalar(conn, id=1, n=5) == 5
        assert (await READ.one(conn, id=1)).v == 5  # sees its own write
        assert conn.in_transaction()
        await conn.rollback()
    assert await _v(eng) == 0
    async with AsyncSession(eng) as session:
        assert await ADD.scalar(session, id=1, n=7) == 7
    assert await _v(eng) == 0  # closed without commit
    async with AsyncSession(eng) as session, session.begin():
        await ADD.scalar(session, id=1, n=7)
    assert await _v(eng) == 7


async def test_an_invalidated_connection_refuses_like_execute(eng: AsyncEngine) -> None:
    # In a transaction whose connection was invalidated, the fast path takes
    # SQLAlchemy's way to the connection (not its shortcut for a begun one)
    # and refuses as execute() does, until the transaction is rolled back.
    async with eng.connect() as conn:
        await ADD.execute(conn, id=1, n=1)
        await conn.invalidate()
        with pytest.raises(sa.exc.PendingRollbackError) as by_execute:
            await conn.execute(sa.select(tt.c.v))
        with pytest.raises(sa.exc.PendingRollbackError) as by_fast_path:
            await READ.one(conn, id=1)
        assert type(by_fast_path.value) is type(by_execute.value)
        await conn.rollback()
        assert (await READ.one(conn, id=1)).v == 0  # a new connection
    assert await _v(eng) == 0


async def test_run_transaction_bodies(eng: AsyncEngine) -> None:
    async def on_connection(conn: AsyncConnection) -> int:
        return int(await ADD.scalar(conn, id=1, n=1))

    async def on_session(session: AsyncSession) -> int:
        return int(await ADD.scalar(session, id=1, n=1))

    assert await run_transaction(eng, on_connection, policy=POLICY) == 1
    sessions = async_sessionmaker(eng)
    assert await run_transaction(sessions, on_session, policy=POLICY) == 2
    async for attempt in retrying(eng, policy=POLICY):
        async with attempt as conn:
            await ADD.execute(conn, id=1, n=1)
    assert await _v(eng) == 3


async def test_run_transaction_retries_a_serialization_failure(
    eng: AsyncEngine,
) -> None:
    calls = 0

    async def body(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await ADD.execute(conn, id=1, n=1)
        if calls == 1:
            # The server's own 40001, raised mid-body, as a conflict would.
            await conn.exec_driver_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"
            )

    await run_transaction(eng, body, policy=POLICY)
    assert calls == 2
    assert await _v(eng) == 1  # the first attempt's write was rolled back


async def test_retrying_session_body(eng: AsyncEngine) -> None:
    sessions = async_sessionmaker(eng)
    async with retrying_session(sessions, policy=POLICY) as session:
        row = await READ.one(session, id=2)
        await ADD.execute(session, id=2, n=row.v + 4)
    assert await _v(eng, 2) == 4


async def test_a_stale_statement_outside_a_transaction_is_prepared_again(
    eng: AsyncEngine, crdb_url: URL
) -> None:
    assert (await READ.one(eng, id=1)).v == 0  # prepared on the pooled connection
    await _alter(crdb_url)  # another client changes the column's type
    fast = await READ.one(eng, id=1)
    async with eng.connect() as conn:
        ordinary = (await conn.execute(READ.statement, {"id": 1})).one()
    assert tuple(fast) == tuple(ordinary) == (1, "0")


async def test_a_stale_statement_in_a_transaction_is_retried_by_run_transaction(
    eng: AsyncEngine, crdb_url: URL
) -> None:
    async with eng.connect() as conn:
        await READ.one(conn, id=1)  # prepared on this connection
        await conn.commit()
        await _alter(crdb_url)
        with pytest.raises(sa.exc.DBAPIError) as caught:
            await READ.one(conn, id=1)
        await conn.rollback()
    assert classify(caught.value).kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR
    await _alter(crdb_url, "int")

    async def body(conn: AsyncConnection) -> Any:
        return (await READ.one(conn, id=1)).v

    assert await run_transaction(eng, body, policy=POLICY) == 0
    await _alter(crdb_url, "text")
    assert await run_transaction(eng, body, policy=POLICY) == "0"


async def _alter(url: URL, to: str = "text") -> None:
    other = create_async_engine(url)
    try:
        async with other.begin() as conn:
            await conn.exec_driver_sql(
                f"ALTER TABLE fp_tx ALTER COLUMN v TYPE {to} USING v::{to}"
            )
    finally:
        await other.dispose()


pairs = sa.Table(
    "fp_pairs",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("p", sa.types.NullType),  # a composite type (fp_pair) in the DDL
)
READ_PAIR = prepared(sa.select(pairs.c.p).where(pairs.c.id == sa.bindparam("id")))


async def test_a_statement_asyncpg_closed_is_prepared_again(
    eng: AsyncEngine, crdb_server: Any
) -> None:
    # asyncpg closes a prepared statement whose composite result type changed
    # shape (OutdatedSchemaCacheError); the fast path then prepares it again
    # rather than keep running the closed one.
    if crdb_server.is_cockroachdb:
        pytest.skip(
            "needs ALTER TYPE ... ADD ATTRIBUTE on a composite type, which "
            "CockroachDB lacks (https://github.com/cockroachdb/cockroach/issues/48701)"
        )
    ddl = (
        "DROP TABLE IF EXISTS fp_pairs",
        "DROP TYPE IF EXISTS fp_pair",
        "CREATE TYPE fp_pair AS (a int, b int)",
        "CREATE TABLE fp_pairs (id int PRIMARY KEY, p fp_pair)",
        "INSERT INTO fp_pairs VALUES (1, ROW(1, 2))",
    )
    async with eng.begin() as conn:
        for statement in ddl:
            await conn.exec_driver_sql(statement)
    async with eng.connect() as conn:
        assert tuple((await READ_PAIR.one(conn, id=1)).p) == (1, 2)
        await conn.commit()
        async with eng.connect() as other:  # the pool's other connection
            await other.exec_driver_sql("ALTER TYPE fp_pair ADD ATTRIBUTE c int")
            await other.commit()
        with pytest.raises(sa.exc.DBAPIError, match="composite type"):
            await READ_PAIR.one(conn, id=1)
        await conn.rollback()
        assert tuple((await READ_PAIR.one(conn, id=1)).p) == (1, 2, None)
        await conn.rollback()
    async with eng.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE fp_pairs")
        await conn.exec_driver_sql("DROP TYPE fp_pair")
