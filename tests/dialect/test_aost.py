"""AS OF SYSTEM TIME runs only where CockroachDB accepts it.

CockroachDB refuses the clause inside an explicit transaction
(tests/crdb_facts/errors_more.json ``as_of_system_time``: "inconsistent AS OF
SYSTEM TIME timestamp", "cannot use a bounded staleness query in a transaction"). The
dialect lets it through on an AUTOCOMMIT connection and refuses it client-side
otherwise; inside a transaction, ``set_transaction_as_of_system_time()`` is the
first statement instead.

The refusal tests run on the embedded PostgreSQL with the dialect switched to
CockroachDB mode by a recorded ``version()`` answer
(tests/crdb_facts/version.json): the statement compiles as on CockroachDB,
and the check happens
before anything is sent. What CockroachDB then does with it is in the
crdb_only tests.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

from sqlalchemy_crdb_async import (
    AsOfSystemTimeError,
    as_of_system_time,
    follower_read_timestamp,
    set_transaction_as_of_system_time,
    with_max_staleness,
)
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.server import parse_server_version
from tests import facts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL

V25 = (
    "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, built 2025/06/02 23:17:23, "
    "go1.23.7 X:nocoverageredesign)"
)
T = sa.table("t", sa.column("id"))


def _crdb() -> CockroachDBDialect_asyncpg:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(V25, "13.0.0")
    return dialect


def _pg() -> CockroachDBDialect_asyncpg:
    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version("PostgreSQL 15.18 on x86_64", "15.18")
    return dialect


@pytest.mark.parametrize(
    ("value", "sql"),
    [
        ("-10s", "SET TRANSACTION AS OF SYSTEM TIME '-10s'"),
        (dt.timedelta(days=-12), "SET TRANSACTION AS OF SYSTEM TIME '-1036800s'"),
        (
            follower_read_timestamp(),
            "SET TRANSACTION AS OF SYSTEM TIME follower_read_timestamp()",
        ),
    ],
)
def test_set_transaction_as_of_system_time(value: Any, sql: str) -> None:
    assert str(set_transaction_as_of_system_time(value).compile(dialect=_crdb())) == sql


def test_set_transaction_as_of_system_time_is_crdb_only() -> None:
    stmt = set_transaction_as_of_system_time("-1s")
    with pytest.raises(sa.exc.CompileError, match="CockroachDB-only"):
        stmt.compile(dialect=_pg())


def test_bounded_staleness_is_refused_in_a_transaction() -> None:
    with pytest.raises(sa.exc.ArgumentError, match="AUTOCOMMIT"):
        set_transaction_as_of_system_time(with_max_staleness("10s"))


def _nested(kind: str) -> sa.ClauseElement:
    """A statement with an AS OF SYSTEM TIME select below its top level."""
    inner = as_of_system_time(sa.select(T.c.id), "-10s")
    if kind == "subquery":
        return sa.select(inner.subquery().c.id)
    if kind == "scalar subquery":
        return sa.select(T.c.id).where(T.c.id == inner.scalar_subquery())
    if kind == "cte":
        cte = inner.cte("old")
        return sa.select(cte.c.id)
    if kind == "union":
        return sa.union_all(sa.select(T.c.id), inner)
    assert kind == "insert"
    return sa.insert(sa.table("u", sa.column("id"))).from_select(["id"], inner)


AOST_TOP_LEVEL = next(
    item
    for key, item in facts.load("errors_batch3.json").items()
    if key == "42601_aost_not_top_level"
)


@pytest.mark.parametrize(
    ("kind", "place"),
    [
        ("subquery", "a subquery"),
        ("scalar subquery", "a subquery"),
        ("cte", "a CTE (WITH ...)"),
        ("union", "an arm of a UNION ALL"),
        ("insert", "an INSERT ... SELECT"),
    ],
)
def test_refused_below_the_top_level_at_compile_time(kind: str, place: str) -> None:
    # CockroachDB refuses it there with 42601 (errors_batch3.json, recorded)
    assert AOST_TOP_LEVEL["sqlstate"] == "42601"
    with pytest.raises(sa.exc.CompileError) as info:
        _nested(kind).compile(dialect=_crdb())
    message = str(info.value)
    assert f"inside {place};" in message
    assert AOST_TOP_LEVEL["message"] in message
    assert "42601" in message


def test_orm_joinedload_with_limit_is_refused_with_the_way_out() -> None:
    # the ORM wraps a joined-eager select with LIMIT in a subquery, taking the
    # clause along: CockroachDB would refuse what it sent before
    class Base(DeclarativeBase):
        pass

    class Parent(Base):
        __tablename__ = "parent"
        id: Mapped[int] = mapped_column(primary_key=True)
        kids: Mapped[list[Kid]] = relationship()

    class Kid(Base):
        __tablename__ = "kid"
        id: Mapped[int] = mapped_column(primary_key=True)
        parent_id: Mapped[int] = mapped_column(sa.ForeignKey("parent.id"))

    joined = sa.select(Parent).options(joinedload(Parent.kids)).limit(3)
    with pytest.raises(sa.exc.CompileError, match="selectinload"):
        as_of_system_time(joined, "-10s").compile(dialect=_crdb())
    selectin = sa.select(Parent).options(selectinload(Parent.kids)).limit(3)
    sql = str(as_of_system_time(selectin, "-10s").compile(dialect=_crdb()))
    assert "FROM parent AS OF SYSTEM TIME '-10s'" in sql


def test_top_level_clause_covers_a_subquery() -> None:
    inner = sa.select(T.c.id).subquery()
    stmt = as_of_system_time(sa.select(inner.c.id), "-10s")
    sql = str(stmt.compile(dialect=_crdb())).rstrip()
    assert sql.endswith("AS anon_1 AS OF SYSTEM TIME '-10s'")


@pytest.fixture
async def crdb_mode(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    """An engine on the embedded server whose dialect believes it is CockroachDB."""
    eng = create_async_engine(crdb_url)
    try:
        async with eng.connect():
            pass  # server detection done
        if eng.dialect.is_cockroachdb:  # type: ignore[attr-defined]
            pytest.skip("needs the embedded PostgreSQL as a stand-in")
        eng.dialect.server_info = parse_server_version(  # type: ignore[attr-defined]
            V25, "13.0.0"
        )
        yield eng
    finally:
        await eng.dispose()


def _refusal(case: str) -> str:
    for item in facts.load("errors_more.json")["as_of_system_time"]:
        if item["case"].startswith(case):
            return str(item.get("message") or item["eras"][0]["format"].split(";")[0])
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("value", "server_refusal"),
    [
        ("-10s", _refusal("AOST clause in an explicit transaction")),
        (with_max_staleness("10s"), _refusal("bounded staleness (with_min")),
    ],
)
async def test_refused_in_a_transaction_before_anything_is_sent(
    crdb_mode: AsyncEngine, value: Any, server_refusal: str
) -> None:
    stmt = as_of_system_time(sa.select(T.c.id), value)
    async with crdb_mode.connect() as conn:
        with pytest.raises(AsOfSystemTimeError) as info:
            await conn.execute(stmt)
        # nothing was sent: not even the BEGIN the driver sends lazily
        raw = await conn.get_raw_connection()
        assert not raw.driver_connection.is_in_transaction()  # type: ignore[union-attr]
    message = str(info.value)
    assert server_refusal in message
    assert "AUTOCOMMIT" in message


async def test_let_through_on_an_autocommit_connection(
    crdb_mode: AsyncEngine,
) -> None:
    stmt = as_of_system_time(sa.select(T.c.id), "-10s")
    async with crdb_mode.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # it reaches the server: PostgreSQL does not know the clause
        with pytest.raises(sa.exc.ProgrammingError, match="syntax error"):
            await conn.execute(stmt)
