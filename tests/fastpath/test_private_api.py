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
