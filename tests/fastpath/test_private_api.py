"""The private asyncpg and SQLAlchemy-adapter API the fast path relies on
(``fastpath/_targets.py``); these fail naming what changed."""

from __future__ import annotations

import inspect

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection


def test_asyncpg_connection_keeps_its_top_transaction() -> None:
    assert "_top_xact" in asyncpg.Connection.__slots__, (
        f"asyncpg {asyncpg.__version__}: Connection._top_xact is gone: update "
        "fastpath/_targets.py (_begin)"
    )


def test_the_adapter_begins_as_the_fast_path_expects() -> None:
    start = AsyncAdapt_asyncpg_connection._start_transaction
    assert inspect.iscoroutinefunction(start)
    slots = AsyncAdapt_asyncpg_connection.__slots__
    assert "_transaction" in slots
    assert "_execute_mutex" in {
        s
        for cls in AsyncAdapt_asyncpg_connection.__mro__
        for s in getattr(cls, "__slots__", ())
    }


def test_a_prepared_statement_runs_on_its_protocol_state() -> None:
    # fastpath/_driver.py (fetch) runs a cached statement as
    # PreparedStatement.fetch() does: Protocol.bind_execute(state, args,
    # portal, limit, return_extra, timeout) on PreparedStatement._state.
    from asyncpg.prepared_stmt import PreparedStatement
    from asyncpg.protocol.protocol import Protocol

    assert "_state" in PreparedStatement.__slots__, (
        f"asyncpg {asyncpg.__version__}: PreparedStatement._state is gone: "
        "update fastpath/_driver.py (CachedStatement, fetch)"
    )
    names = list(inspect.signature(Protocol.bind_execute).parameters)
    assert names == [
        "self",
        "state",
        "args",
        "portal_name",
        "limit",
        "return_extra",
        "timeout",
    ], (
        f"asyncpg {asyncpg.__version__}: Protocol.bind_execute{names} changed: "
        "update fastpath/_driver.py (fetch)"
    )
    slots = {
        s
        for cls in AsyncAdapt_asyncpg_connection.__mro__
        for s in getattr(cls, "__slots__", ())
    }
    assert "_connection" in slots, (
        "SQLAlchemy's asyncpg adapter no longer keeps the driver connection as "
        "_connection: update fastpath/_targets.py (_on_connection)"
    )


def test_a_connection_keeps_its_transaction_and_pool_connection() -> None:
    # fastpath/_targets.py (_on_connection) reads these two instead of
    # in_transaction() and .connection, once per statement.
    import sqlalchemy as sa

    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert conn._transaction is None
            assert conn._dbapi_connection is conn.connection
            conn.begin()
            assert conn._transaction is not None
            assert conn._transaction.is_active
            assert conn.in_transaction()
    finally:
        engine.dispose()
