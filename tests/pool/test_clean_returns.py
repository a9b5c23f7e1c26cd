"""A connection whose statements left nothing behind goes back with no reset.

``CockroachPool`` resets a returned connection's session only when something
sent on it could have left state there (pool/_statements.py): reads that
SQLAlchemy compiled (Core ``select()``, ``session.get()``), and writes into
tables no default of which can draw a sequence value, roll back plainly, as
with SQLAlchemy's own pool; raw SQL, writes that may draw a sequence value and
functions with session side effects still get the reset, and none of their
state reaches the next borrower, in autocommit mode too (sequence state:
tests/pool/test_write_verdicts.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import PoolSettings, pool_stats
from sqlalchemy_crdb_async.pool._statements import (
    leaves_nothing,
    statement_leaves_nothing,
)
from tests.pool.test_write_verdicts import identity, sequenced, serial

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

#: A read that leaves nothing behind itself (``current_setting`` is pure), so
#: only the statement under test can make the connection need its reset.
SHOW_PATH = sa.select(sa.func.current_setting("search_path"))

# one connection, no ping between operations, whatever the machine's load
SETTINGS = PoolSettings(pool_size=1, idle_before_ping_s=None)

metadata = sa.MetaData()
things = sa.Table(
    "clean_returns",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String),
)


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "clean_returns"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    name: Mapped[str]


@pytest.fixture
async def eng(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    setup = create_async_engine(crdb_url)
    async with setup.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        await conn.execute(things.insert(), [{"id": 1, "name": "one"}])
    await setup.dispose()
    engine = create_async_engine(crdb_url, **SETTINGS.engine_kwargs())
    yield engine
    await engine.dispose()


async def _core_read(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        row = (await conn.execute(sa.select(things).where(things.c.id == 1))).one()
        assert row.name == "one"


async def _orm_get(eng: AsyncEngine) -> None:
    async with AsyncSession(eng) as session:
        thing = await session.get(Thing, 1)
        assert thing is not None


async def _count(eng: AsyncEngine) -> None:
    async with eng.connect() as conn:
        n = await conn.scalar(sa.select(sa.func.count()).select_from(things))
        assert n == 1


@pytest.mark.parametrize("read", [_core_read, _orm_get, _count])
async def test_reads_compiled_by_sqlalchemy_need_no_reset(
    eng: AsyncEngine, read: Any
) -> None:
    await read(eng)  # the first prepares the statement on the connection
    before = pool_stats(eng)["resets"]
    for _ in range(3):
        await read(eng)
    assert pool_stats(eng)["resets"] == before
    driver = await _idle_driver(eng)
    assert driver.crdb_clean is True
    assert driver.crdb_owed is None


async def test_raw_sql_still_resets(eng: AsyncEngine) -> None:
    for _ in range(3):
        before = pool_stats(eng)["resets"]
        async with eng.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        assert pool_stats(eng)["resets"] == before + 1


@pytest.mark.parametrize("read", [_core_read, _orm_get, _count])
@pytest.mark.parametrize("prepared", [False, True], ids=["new", "prepared"])
async def test_a_read_that_pays_an_owed_reset_goes_back_clean(
    eng: AsyncEngine, read: Any, prepared: bool
) -> None:
    # The reset owed after a COMMIT travels with the read's BEGIN
    # (pool/_reset.py); the read itself leaves nothing, so the connection goes
    # back clean: no second reset with its ROLLBACK. "new": the read's
    # statement is prepared on the connection after the reset is paid.
    if prepared:
        await read(eng)
    for _ in range(2):  # the first reset goes out on return; then one is owed
        async with eng.begin() as conn:
            await conn.execute(sa.text("SET search_path = public"))
    driver = await _idle_driver(eng)
    assert driver.crdb_owed is not None
    before = pool_stats(eng)["resets"]
    await read(eng)
    assert driver.crdb_owed is None
    assert driver.crdb_clean is True
    assert pool_stats(eng)["resets"] == before


@pytest.mark.parametrize(
    "lock",
    [
        pytest.param(sa.select(sa.func.pg_advisory_lock(4242)), id="func"),
        pytest.param(sa.text("SELECT pg_advisory_lock(4242)"), id="text"),
    ],
)
async def test_a_session_lock_taken_by_a_select_is_released_on_return(
    eng: AsyncEngine, crdb_url: URL, lock: Any
) -> None:
    if eng.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip("needs PostgreSQL's session advisory locks")
    for _ in range(2):  # the second runs the statement prepared before
        async with eng.connect() as conn:
            await conn.execute(lock)
        other = create_async_engine(crdb_url)
        try:
            async with other.connect() as conn:
                got = await conn.scalar(sa.text("SELECT pg_try_advisory_lock(4242)"))
                assert got is True, "the returned connection still holds the lock"
                await conn.execute(sa.text("SELECT pg_advisory_unlock(4242)"))
        finally:
            await other.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            sa.select(sa.func.set_config("search_path", "leaked", False)),
            id="set_config",
        ),
        pytest.param(sa.text("SET search_path = leaked"), id="SET"),
    ],
)
@pytest.mark.parametrize("autocommit", [False, True], ids=["transaction", "autocommit"])
async def test_a_setting_never_reaches_the_next_checkout(
    eng: AsyncEngine, statement: Any, autocommit: bool
) -> None:
    # Several rounds: from the second on SQLAlchemy runs its cached
    # prepared statement, which passes none of asyncpg's Connection methods.
    for _ in range(4):
        async with eng.connect() as conn:
            if autocommit:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            path = await conn.scalar(SHOW_PATH)
            assert path != "leaked"
            await conn.execute(statement)
            if not autocommit:
                await conn.commit()


#: Tables the verdicts below are about; never created (only compiled against).
judged = sa.MetaData()
keyed = sa.Table(
    "keyed",
    judged,
    sa.Column(
        "id", sa.Uuid, primary_key=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column("at", sa.DateTime, server_default=sa.func.now()),
    sa.Column("made", sa.DateTime, server_default=sa.text("CURRENT_TIMESTAMP")),
    sa.Column("n", sa.Integer, server_default="0"),
    sa.Column("m", sa.Integer, server_default=sa.text("'7'::int8")),
    sa.Column("p", sa.Integer, default=5, onupdate=lambda: 6),
    sa.Column("q", sa.Integer, sa.Computed("n * 2")),
    sa.Column("touched", sa.DateTime, onupdate=sa.func.now()),
)
rowid = sa.Table(
    "rowid",
    judged,
    sa.Column(
        "id", sa.BigInteger, primary_key=True, server_default=sa.text("unique_rowid()")
    ),
    sa.Column("v", sa.Integer),
)
manual = sa.Table(
    "manual",
    judged,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("v", sa.Integer),
)


def _one_default(name: str, **column_kw: Any) -> sa.Table:
    return sa.Table(
        name,
        judged,
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("n", sa.Integer, **column_kw),
    )


nextval = _one_default("nextval", server_default=sa.text("nextval('judged_seq')"))
unknown_text = _one_default("unknown_text", server_default=sa.text("my_default()"))
unknown_func = _one_default("unknown_func", server_default=sa.func.my_default())
fetched = _one_default("fetched", server_default=sa.FetchedValue())
counted = _one_default("counted", default=sa.Sequence("judged_seq"))
sql_default = _one_default("sql_default", default=sa.func.nextval("judged_seq"))
bad_onupdate = _one_default("bad_onupdate", onupdate=sa.func.nextval("judged_seq"))
trigger_onupdate = _one_default("trigger_onupdate", server_onupdate=sa.FetchedValue())

#: Foreign keys whose actions fire a referencing column's default.
linked = sa.MetaData()
parent = sa.Table("parent", linked, sa.Column("id", sa.Uuid, primary_key=True))
middle = sa.Table(
    "middle",
    linked,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("parent_id", sa.ForeignKey("parent.id", ondelete="CASCADE")),
)
leaf = sa.Table(
    "leaf",
    linked,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "middle_id",
        sa.ForeignKey("middle.id", ondelete="SET DEFAULT", onupdate="SET DEFAULT"),
        server_default=sa.text("my_default()"),
    ),
)
calm = sa.Table(
    "calm",
    linked,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "leaf_id",
        sa.ForeignKey("leaf.id", ondelete="SET DEFAULT"),
        server_default=sa.text("NULL"),
    ),
)


class Wrapped(sa.TypeDecorator[str]):
    """A type that wraps its values in SQL when compiled: the function is in
    no statement the judge walks."""

    impl = sa.String
    cache_ok = True

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.func.my_function(bindvalue)


wrapped = _one_default("wrapped")
wrapped.append_column(sa.Column("w", Wrapped()))


class Keyed(Base):
    __table__ = keyed


def _write_verdicts() -> list[Any]:
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    from sqlalchemy_crdb_async import upsert

    evil = sa.func.my_function()
    cases = [
        (keyed.insert().values(n=1), True, "uuid-key-and-pure-defaults"),
        (
            keyed.insert().values(n=1).returning(keyed.c.id, keyed.c.at),
            True,
            "returning",
        ),
        (
            keyed.update().values(n=2).where(keyed.c.n == 1),
            True,
            "update-pure-onupdate",
        ),
        (keyed.delete().where(keyed.c.n == 1), True, "delete"),
        (sa.insert(Keyed).values(n=1), True, "orm-insert"),
        (sa.update(Keyed).values(n=1), True, "orm-update"),
        (keyed.insert().values([{"n": 1}, {"n": 2}]), True, "multi-values"),
        (keyed.insert().values([{"n": 1}, {"n": evil}]), False, "multi-values-func"),
        (keyed.insert().values(n=evil), False, "values-func"),
        (keyed.insert().values(n=1).returning(evil), False, "returning-func"),
        (keyed.update().values(n=1).where(keyed.c.n == evil), False, "where-func"),
        (keyed.delete().where(sa.text("n = 1")), False, "where-text"),
        (keyed.insert().prefix_with("/* hint */"), False, "prefix"),
        (keyed.insert().from_select(["n"], sa.select(manual.c.v)), True, "from-select"),
        (keyed.insert().from_select(["n"], sa.select(evil)), False, "from-select-func"),
        (upsert(keyed).values(id=None, n=1), True, "upsert"),
        (
            pg_insert(keyed)
            .values(n=1)
            .on_conflict_do_update(index_elements=["id"], set_={"n": evil}),
            False,
            "on-conflict-func",
        ),
        (rowid.insert().values(v=1), True, "unique-rowid-key"),
        (manual.insert().values(id=1, v=1), True, "autoincrement-false"),
        (serial.insert().values(v=1), False, "serial-insert"),
        (serial.insert().values(id=1, v=1), False, "serial-insert-with-key"),
        (serial.update().values(v=1), True, "serial-update"),
        (serial.delete(), True, "serial-delete"),
        (sequenced.insert().values(v=1), False, "sequence-key"),
        (counted.insert().values(id=None), False, "sequence-column"),
        (identity.insert(), False, "identity"),
        (nextval.insert().values(id=None), False, "nextval-text"),
        (unknown_text.insert().values(id=None), False, "unknown-text"),
        (unknown_func.insert().values(id=None), False, "unknown-function"),
        (fetched.insert().values(id=None), False, "fetched-value"),
        (sql_default.insert().values(id=None), False, "sql-default"),
        (bad_onupdate.update().values(id=None), False, "bad-onupdate"),
        (bad_onupdate.insert().values(id=None), False, "bad-onupdate-upsert"),
        (trigger_onupdate.update().values(id=None), False, "server-onupdate"),
        (trigger_onupdate.delete(), True, "server-onupdate-delete"),
        (sa.table("lite", sa.column("v")).insert().values(v=1), False, "lightweight"),
        (wrapped.insert().values(id=None, w="x"), False, "type-bind-expression"),
        (sa.select(wrapped.c.id).where(wrapped.c.w == "x"), False, "type-in-select"),
        (sa.select(wrapped.c.id), True, "other-columns-of-the-table"),
        (
            keyed.update().values(n=1).where(keyed.c.id == manual.c.id),
            True,
            "update-from",
        ),
        (parent.delete(), False, "cascade-then-set-default"),
        (middle.update().values(id=None), False, "set-default-on-update"),
        (leaf.delete(), True, "set-default-pure"),
        (calm.delete(), True, "nothing-references"),
    ]
    return [pytest.param(s, v, id=i) for s, v, i in cases]


async def test_the_pool_hooks_need_no_dialect_events(eng: AsyncEngine) -> None:
    # SQLAlchemy looks up and iterates a dialect's event listeners on every
    # statement: the pool's hooks are not events (pool/_listeners.py).
    assert eng.sync_engine.dialect._has_events is False
    # A user's own do_execute listener still runs, and the hook still sees
    # each statement: no SET reaches the next borrower, from the cache too.
    seen: list[str] = []
    event.listen(eng.sync_engine, "do_execute", lambda c, s, p, x: seen.append(s))
    for _ in range(4):
        async with eng.connect() as conn:
            assert await conn.scalar(SHOW_PATH) != "leaked"
            await conn.execute(sa.text("SET search_path = leaked"))
            await conn.commit()
    assert any("search_path = leaked" in statement for statement in seen)


@pytest.mark.parametrize(
    ("statement", "verdict"),
    [
        (sa.select(things).where(things.c.id == 1), True),
        (sa.select(Thing).where(Thing.id == 1), True),
        (sa.select(sa.func.count()).select_from(things), True),
        (sa.select(sa.func.lower(things.c.name)), True),
        (sa.select(things).with_for_update(), True),
        (sa.select(sa.func.pg_advisory_lock(1)), False),
        (sa.select(sa.func.nextval("s")), False),
        (sa.select(sa.func.my_function()), False),
        (sa.select(things).where(sa.text("id = 1")), False),
        (sa.select(sa.literal_column("pg_advisory_lock(1)")), False),
        (sa.select(things).prefix_with("/* hint */"), False),
        (things.insert().values(id=2, name="two"), False),
        (things.update().values(name="x"), True),
        (sa.text("SELECT 1"), False),
        (
            sa.select(
                things.insert().values(id=3, name="three").returning(things.c.id).cte()
            ),
            False,
        ),
        *_write_verdicts(),
    ],
    ids=lambda v: v if isinstance(v, bool) else type(v).__name__,
)
def test_which_statements_leave_nothing(
    eng: AsyncEngine, statement: Any, verdict: bool
) -> None:
    compiled = statement.compile(dialect=eng.dialect)

    class Context:
        pass

    context: Any = Context()
    context.compiled = compiled
    assert leaves_nothing(context) is verdict
    assert leaves_nothing(context) is verdict  # kept on the compiled statement
    # the fast path asks the same judge of the statement itself
    assert statement_leaves_nothing(statement) is verdict


def test_raw_sql_without_a_compiled_statement_leaves_something() -> None:
    assert leaves_nothing(None) is False


async def _idle_driver(eng: AsyncEngine) -> Any:
    async with eng.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
    return driver


@pytest.mark.parametrize("target", ["connection", "session"])
async def test_the_fast_path_in_a_transaction_still_resets_what_it_set(
    eng: AsyncEngine, target: str
) -> None:
    from sqlalchemy_crdb_async import prepared

    leak = prepared(sa.select(sa.func.set_config("search_path", "leaked", False)))
    for _ in range(3):  # the later rounds run the statement prepared before
        async with eng.connect() as conn:
            path = await conn.scalar(SHOW_PATH)
            assert path != "leaked"
            if target == "connection":
                await leak.scalar(conn)  # in the transaction SHOW began
                await conn.commit()
            else:
                await conn.commit()
                async with AsyncSession(bind=conn) as session, session.begin():
                    await leak.scalar(session)
