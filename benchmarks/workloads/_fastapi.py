"""Shared by the two FastAPI workloads: the example app's table, its loader.

The app is ``examples/fastapi_bank`` (run from the checkout's root, where
``examples`` is importable). It needs FastAPI and httpx (the ``bench`` extra)
and this package's retry helpers and ``PoolSettings``; until all are there,
:func:`app_unavailable` says what is missing and the scenarios are reported
unavailable.
"""

from __future__ import annotations

import importlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

ACCOUNTS = 100
START_BALANCE = Decimal("1000.00")
TOTAL = ACCOUNTS * START_BALANCE
APP_MODULE = "examples.fastapi_bank.app"


def app_unavailable() -> str | None:
    """None when the example app imports, else why not."""
    try:
        importlib.import_module("httpx")
        importlib.import_module(APP_MODULE)
    except ImportError as e:
        return f"the FastAPI example app does not import here: {e}"
    return None


def app_module() -> Any:
    return importlib.import_module(APP_MODULE)


async def create_accounts(conn: asyncpg.Connection) -> None:
    """The app's ``bank_accounts`` table (as its ORM model declares), 100 accounts."""
    await conn.execute("DROP TABLE IF EXISTS bank_accounts")
    await conn.execute(
        "CREATE TABLE bank_accounts (id INT8 PRIMARY KEY, "
        "owner VARCHAR(100) NOT NULL, balance NUMERIC(14, 2) NOT NULL)"
    )
    await conn.execute(
        "INSERT INTO bank_accounts (id, owner, balance) SELECT i, 'owner-' || "
        f"i::TEXT, {START_BALANCE} FROM generate_series(1, {ACCOUNTS}) AS i"
    )
