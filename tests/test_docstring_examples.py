"""The public docstrings say what they accept, retry and raise, and their
examples run as a reader would paste them.

Why not doctest: most examples ``await`` (``run_transaction``, ``retrying``,
``retrying_session``, ...) and need a database, and a ``>>>`` transcript with an
event loop in every example would teach the reader a form they never write.
So every literal block introduced by a line ending in ``Example::`` (or
``Example (CockroachDB)::``) is cut out of the docstring as it is, run as the
body of an ``async def`` against the suite's embedded server (the
``crdb_url`` fixture), and must finish without error; its ``assert`` lines
are the checks. The names an example may use without importing them:
``engine`` (an asyncpg ``AsyncEngine``), ``Session`` (its
``async_sessionmaker``), ``Account`` (a mapped class with ``id`` and
``balance``), ``accounts`` (its table, rows 1 and 2 with balance 100),
``sync_engine`` (a psycopg ``Engine``), ``url``, ``select``, ``text``,
``create_async_engine`` and every name in ``sqlalchemy_crdb_async.__all__``.
Examples marked ``(CockroachDB)`` run in full only on CockroachDB; on
PostgreSQL they run up to the statement this package refuses there (a
``CompileError`` saying "CockroachDB-only"), then skip naming the feature.
"""

from __future__ import annotations

import re
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Integer, create_engine, delete, insert, select, text
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_crdb_async
from sqlalchemy_crdb_async import sync
from sqlalchemy_crdb_async.retry import replay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(Integer)


#: Public callables whose docstring must say what they accept, retry and raise.
DOCUMENTED: dict[str, Any] = {
    "run_transaction": sqlalchemy_crdb_async.run_transaction,
    "retrying": sqlalchemy_crdb_async.retrying,
    "retrying_session": sqlalchemy_crdb_async.retrying_session,
    "RetryPolicy": sqlalchemy_crdb_async.RetryPolicy,
    "sync.run_transaction": sync.run_transaction,
    "PoolSettings": sqlalchemy_crdb_async.PoolSettings,
    "pool_stats": sqlalchemy_crdb_async.pool_stats,
    "retry_stats": sqlalchemy_crdb_async.retry_stats,
    "upsert": sqlalchemy_crdb_async.upsert,
    "as_of_system_time": sqlalchemy_crdb_async.as_of_system_time,
    "index_hint": sqlalchemy_crdb_async.index_hint,
}
#: Everything whose examples are run.
WITH_EXAMPLES: dict[str, Any] = {
    **DOCUMENTED,
    "follower_read_timestamp": sqlalchemy_crdb_async.follower_read_timestamp,
    "with_max_staleness": sqlalchemy_crdb_async.with_max_staleness,
    "timestampdiff": sqlalchemy_crdb_async.timestampdiff,
    "unique_rowid": sqlalchemy_crdb_async.unique_rowid,
    "uuid_primary_key": sqlalchemy_crdb_async.uuid_primary_key,
    "retry.replay (module)": replay,
}
_MARKER = re.compile(r"^(?P<indent>\s*).*\bexample(?: \((?P<needs>[^)]*)\))?::$", re.I)
#: The CockroachDB feature each CockroachDB-only example needs.
CRDB_FEATURE = {
    "as_of_system_time": "AS OF SYSTEM TIME",
    "follower_read_timestamp": "follower reads (AS OF SYSTEM TIME)",
    "with_max_staleness": "bounded-staleness reads",
    "index_hint": "index hints (table@index)",
    "unique_rowid": "unique_rowid()",
}


def examples(doc: str) -> list[tuple[str | None, str]]:
    """``(needs, code)`` of each ``Example::`` literal block in ``doc``."""
    lines = textwrap.dedent(doc).splitlines()
    found = []
    for i, line in enumerate(lines):
        match = _MARKER.match(line)
        if match is None:
            continue
        indent = len(match.group("indent"))
        block = []
        for body in lines[i + 1 :]:
            if body.strip() and len(body) - len(body.lstrip()) <= indent:
                break
            block.append(body)
        found.append((match.group("needs"), textwrap.dedent("\n".join(block)).strip()))
    return found


CASES = [
    pytest.param(needs, code, id=f"{name}-{n}")
    for name, obj in WITH_EXAMPLES.items()
    for n, (needs, code) in enumerate(examples(obj.__doc__ or ""), 1)
]


@pytest.mark.parametrize("name", sorted(WITH_EXAMPLES))
def test_each_public_callable_has_an_example(name: str) -> None:
    assert examples(WITH_EXAMPLES[name].__doc__ or ""), name


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_each_docstring_says_what_it_accepts_retries_and_raises(name: str) -> None:
    doc = (DOCUMENTED[name].__doc__ or "").lower()
    assert "see the module docstring" not in doc
    for word in ("accept", "retr", "raise"):
        assert word in doc, f"{name}'s docstring never says what it {word}s"


def test_the_example_finder_reads_a_literal_block() -> None:
    doc = """Title.

    Example (CockroachDB)::

        a = 1
        assert a == 1

    After.
    """
    assert examples(doc) == [("CockroachDB", "a = 1\nassert a == 1")]


@pytest.fixture
async def example_engine(crdb_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(crdb_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def names(example_engine: AsyncEngine, crdb_url: URL) -> AsyncIterator[dict]:
    async with example_engine.begin() as conn:
        await conn.execute(delete(Account))
        await conn.execute(
            insert(Account), [{"id": 1, "balance": 100}, {"id": 2, "balance": 100}]
        )
    sync_engine = create_engine(crdb_url.set(drivername="cockroachdb+psycopg"))
    namespace = {
        name: getattr(sqlalchemy_crdb_async, name)
        for name in sqlalchemy_crdb_async.__all__
    }
    namespace.update(
        engine=example_engine,
        Session=async_sessionmaker(example_engine, expire_on_commit=False),
        Account=Account,
        accounts=Account.__table__,
        sync_engine=sync_engine,
        url=crdb_url,
        select=select,
        text=text,
        create_async_engine=create_async_engine,
    )
    try:
        yield namespace
    finally:
        sync_engine.dispose()


@pytest.mark.parametrize(("needs", "code"), CASES)
async def test_the_example_runs(
    needs: str | None, code: str, names: dict, request: pytest.FixtureRequest
) -> None:
    function = "async def example():\n" + textwrap.indent(code, "    ") + "\n"
    exec(compile(function, f"<{request.node.callspec.id}>", "exec"), names)
    engine: AsyncEngine = names["engine"]
    if needs != "CockroachDB" or engine.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        await names["example"]()
        return
    # On PostgreSQL a CockroachDB example runs up to the statement the server
    # cannot take, which this package refuses with a CompileError saying so.
    with pytest.raises(CompileError, match="CockroachDB-only"):
        await names["example"]()
    name = request.node.callspec.id.rsplit("-", 1)[0]
    pytest.skip(f"needs CockroachDB: {CRDB_FEATURE[name]} (ran up to the refusal)")
