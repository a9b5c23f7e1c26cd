"""Writes through the pool: sequence state never reaches the next borrower,
and writes that cannot draw a sequence value go back without a reset.

The judge (pool/_statements.py) decides per statement whether the returned
connection needs its session reset; both the ordinary path and the prepared
fast path ask it. A write into a table with a SERIAL, ``Sequence`` or
``Identity()`` column draws a sequence value, which sets the session's
``lastval()`` and ``currval()``; the reset's ``DISCARD SEQUENCES`` clears
them. The next borrower of the same connection (a pool of one) must find
them undefined: PostgreSQL answers 55000, "lastval is not yet defined in
this session" (https://www.postgresql.org/docs/current/functions-sequence.html),
and so does CockroachDB (cockroach pkg/sql/sequence.go,
``GetLastSequenceValue``: ``CodeObjectNotInPrerequisiteStateError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import PoolSettings, pool_stats, prepared

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

# one connection, no ping between operations, whatever the machine's load
SETTINGS = PoolSettings(pool_size=1, idle_before_ping_s=None)

#: "object not in prerequisite state": lastval()/currval() before any
#: nextval() in the session, on both servers (see the module docstring).
NOT_YET_DEFINED = "55000"

metadata = sa.MetaData()
SEQUENCE = sa.Sequence("wv_counter_seq", metadata=metadata)
serial = sa.Table(
    "wv_serial",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("v", sa.Integer),
)
sequenced = sa.Table(
    "wv_sequenced",
    metadata,
    sa.Column("id", sa.Integer, SEQUENCE, primary_key=True),
    sa.Column("v", sa.Integer),
)
identity = sa.Table(
    "wv_identity",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("v", sa.Integer),
)
keyed = sa.Table(
    "wv_keyed",
    metadata,
    sa.Column(
        "id", sa.Uuid, primary_key=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column("v", sa.Integer),
    sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)
DRAWING = {"serial": serial, "sequence": sequenced, "identity": identity}


@pytest.fixture
async def eng(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    setup = create_async_engine(crdb_url)
    async with setup.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    await setup.dispose()
    engine = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    yield engine
    await engine.dispose()


def _writer(way: str, table: sa.Table) -> Callable[[AsyncEngine], Awaitable[Any]]:
    """One insert of ``table`` with its key drawn by the server, ``way``: the
    ordinary path, or the fast path on the engine or on a connection."""
    statement = table.insert().values(v=sa.bindparam("v"))
    # an UPDATE with a list of parameters goes out through executemany
    renumber = (
        table.update()
        .where(table.c.v == sa.bindparam("old"))
        .values(v=sa.bindparam("new"))
    )
    fast = prepared(statement)

    async def write(eng: AsyncEngine) -> None:
        if way == "ordinary":
            async with eng.begin() as conn:
                await conn.execute(statement, {"v": 1})
        elif way == "ordinary-executemany":
            async with eng.begin() as conn:
                await conn.execute(statement, [{"v": 1}, {"v": 2}])
                await conn.execute(
                    renumber, [{"old": 2, "new": 1}, {"old": 3, "new": 1}]
                )
        elif way == "fast-engine":
            assert await fast.execute(eng, v=1) == 1
        else:
            async with eng.connect() as conn:
                assert await fast.execute(conn, v=1) == 1
                await conn.commit()

    return write


async def _backend(eng: AsyncEngine) -> int:
    async with eng.connect() as conn:
        raw = await conn.get_raw_connection()
        pid: int = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
    return pid


async def _undefined(eng: AsyncEngine, sql: str) -> None:
    """``sql`` fails with 55000 on the next checkout: nothing drawn here."""
    async with eng.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            await conn.scalar(sa.text(sql))
    got = getattr(caught.value.orig, "sqlstate", None)
    assert got == NOT_YET_DEFINED, f"{sql}: {got} {caught.value.orig}"


WAYS = ["ordinary", "fast-engine", "fast-connection"]


@pytest.mark.parametrize("kind", list(DRAWING))
@pytest.mark.parametrize("way", WAYS)
async def test_a_drawn_sequence_value_never_reaches_the_next_borrower(
    eng: AsyncEngine, way: str, kind: str
) -> None:
    write = _writer(way, DRAWING[kind])
    pid = await _backend(eng)
    # Several rounds: from the second on, both paths run statements prepared
    # before on the connection.
    for _ in range(3):
        await write(eng)
        await _undefined(eng, "SELECT lastval()")
        if kind == "sequence":
            await _undefined(eng, f"SELECT currval('{SEQUENCE.name}')")
    assert await _backend(eng) == pid, "the test needs one connection throughout"


@pytest.mark.parametrize("way", [*WAYS, "ordinary-executemany"])
async def test_a_write_that_draws_nothing_goes_back_without_a_reset(
    eng: AsyncEngine, way: str
) -> None:
    write = _writer(way, keyed)
    async with eng.connect() as conn:  # the connection made, nothing sent
        pass
    before = pool_stats(eng)["resets"]
    # The first round prepares the statements on the connection (that too
    # leaves nothing); the later ones run them prepared, or, executemany,
    # through asyncpg's own statement cache.
    for _ in range(3):
        await write(eng)
    assert pool_stats(eng)["resets"] == before
    async with eng.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        rows = await conn.scalar(sa.select(sa.func.count()).select_from(keyed))
        assert rows == (6 if way == "ordinary-executemany" else 3)
    assert driver.crdb_clean is True
    assert driver.crdb_owed is None
