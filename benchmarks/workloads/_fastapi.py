"""Shared by the FastAPI workloads: the example app's tables, its loader, and
the raw-asyncpg statements of its endpoints.

The app is ``examples/fastapi_bank`` (run from the checkout's root, where
``examples`` is importable). It needs FastAPI and httpx (the ``bench`` extra);
until they are there, :func:`app_unavailable` says what is missing and the
scenarios are reported unavailable.

The reference is the same app with the same two endpoints written on raw
asyncpg (:mod:`._fastapi_raw`, mounted under ``/raw``): routing, validation and
JSON are then in both, so the ratio measures the library. The raw endpoints
send the statements the ORM sends, in the same order:

- read: one ``SELECT`` by primary key outside a transaction (ours: the
  read-only session, an implicit transaction);
- transfer: ``SELECT`` of the idempotency key, ``SELECT ... FOR UPDATE`` of
  both accounts in id order, two ``UPDATE``\\ s, ``INSERT ... RETURNING`` of the
  transfer, in one SERIALIZABLE transaction retried on 40001/40P01 with the
  same backoff as ours (1 ms doubling, capped at 100 ms, full jitter).
"""

from __future__ import annotations

import importlib
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

START_BALANCE = Decimal("1000.00")
APP_MODULE = "examples.fastapi_bank.app"

#: The app's tables, as its ORM models declare them (examples/fastapi_bank).
DDL = (
    "DROP TABLE IF EXISTS bank_transfers",
    "DROP TABLE IF EXISTS bank_accounts",
    "CREATE TABLE bank_accounts (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), "
    "owner VARCHAR(100) NOT NULL, balance NUMERIC(14, 2) NOT NULL)",
    "CREATE TABLE bank_transfers (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), "
    "idempotency_key VARCHAR(200) UNIQUE, "
    "from_id UUID NOT NULL REFERENCES bank_accounts (id), "
    "to_id UUID NOT NULL REFERENCES bank_accounts (id), "
    "amount NUMERIC(14, 2) NOT NULL, from_balance NUMERIC(14, 2) NOT NULL, "
    "to_balance NUMERIC(14, 2) NOT NULL, "
    "created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    "CREATE INDEX bank_transfers_page ON bank_transfers (created_at, id)",
)
READ_SQL = "SELECT id, owner, balance FROM bank_accounts WHERE id = $1"
KEY_SQL = (
    "SELECT id, from_id, to_id, amount, from_balance, to_balance, created_at "
    "FROM bank_transfers WHERE idempotency_key = $1"
)
LOCK_SQL = (
    "SELECT id, balance FROM bank_accounts WHERE id = $1 OR id = $2 "
    "ORDER BY id FOR UPDATE"
)
WRITE_SQL = "UPDATE bank_accounts SET balance = $2 WHERE id = $1"
RECORD_SQL = (
    "INSERT INTO bank_transfers (idempotency_key, from_id, to_id, amount, "
    "from_balance, to_balance) VALUES ($1, $2, $3, $4, $5, $6) "
    "RETURNING id, from_id, to_id, amount, from_balance, to_balance, created_at"
)


def account_ids(accounts: int) -> list[uuid.UUID]:
    """The accounts' ids: fixed, so every variant picks from the same rows."""
    return [uuid.UUID(int=i) for i in range(1, accounts + 1)]


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


async def create_accounts(conn: asyncpg.Connection, accounts: int) -> None:
    """The app's tables, ``accounts`` accounts of 1,000.00 each, no transfers."""
    for statement in DDL:
        await conn.execute(statement)
    await conn.executemany(
        "INSERT INTO bank_accounts (id, owner, balance) VALUES ($1, $2, $3)",
        [(i, f"owner-{n}", START_BALANCE) for n, i in enumerate(account_ids(accounts))],
    )


class TransferRefused(Exception):
    """The transfer cannot be done: (HTTP status, detail)."""


async def transfer_on(
    conn: Any, src: uuid.UUID, dst: uuid.UUID, amount: Decimal, key: str | None
) -> Any:
    """The app's transfer on one asyncpg connection in a transaction; returns
    the transfer's row (the first one for a replayed key)."""
    if key is not None:
        done = await conn.fetchrow(KEY_SQL, key)
        if done is not None:
            return done
    rows = {r[0]: r[1] for r in await conn.fetch(LOCK_SQL, src, dst)}
    if src not in rows or dst not in rows:
        raise TransferRefused(404, f"no account {src if src not in rows else dst}")
    if rows[src] < amount:
        raise TransferRefused(409, "insufficient funds")
    from_balance, to_balance = rows[src] - amount, rows[dst] + amount
    await conn.execute(WRITE_SQL, src, from_balance)
    await conn.execute(WRITE_SQL, dst, to_balance)
    return await conn.fetchrow(
        RECORD_SQL, key, src, dst, amount, from_balance, to_balance
    )
