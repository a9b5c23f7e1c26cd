"""A small bank behind FastAPI: accounts and transfers on CockroachDB.

Run it::

    pip install 'sqlalchemy-crdb-async[example]'
    DATABASE_URL=cockroachdb+asyncpg://root@localhost:26257/defaultdb \\
        uvicorn examples.fastapi_bank.app:app

What it shows:

- one engine per process, sized with :class:`~sqlalchemy_crdb_async.PoolSettings`
  (``POOL_VCPUS`` / ``POOL_APP_INSTANCES`` feed CockroachDB's sizing rule);
- every write goes through :func:`~sqlalchemy_crdb_async.run_transaction`, so a
  40001 under contention is retried, with backoff, and never reaches the client;
- ``GET /healthz`` reports the server, the pool and the retry counters.

Endpoints: ``POST /accounts``, ``GET /accounts/{id}``, ``POST /transfers``,
``GET /healthz``. A transfer that would overdraw answers 409; unknown accounts 404.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import (
    PoolSettings,
    RetryPolicy,
    pool_stats,
    retry_stats,
    run_transaction,
)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "bank_accounts"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(100))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))


class NewAccount(BaseModel):
    owner: str = Field(min_length=1, max_length=100)
    balance: Decimal = Field(ge=0, max_digits=14, decimal_places=2)


class AccountOut(BaseModel):
    id: int
    owner: str
    balance: Decimal


class Transfer(BaseModel):
    from_id: int
    to_id: int
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2)


class Overdrawn(Exception):
    """The source account has less than the amount."""


POLICY = RetryPolicy(max_attempts=20, initial_backoff_s=0.005, max_backoff_s=0.2)


def _plain(stats: Any) -> dict[str, Any]:
    """A stats dataclass as JSON-ready data (its mappings as dicts)."""
    return {
        f.name: (dict(v) if isinstance(v := getattr(stats, f.name), Mapping) else v)
        for f in dataclasses.fields(stats)
    }


def sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's session factory (a FastAPI dependency)."""
    return request.app.state.sessions  # type: ignore[no-any-return]


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(sessions)]


def make_engine(url: str) -> AsyncEngine:
    settings = PoolSettings.for_cluster(
        vcpus=int(os.environ.get("POOL_VCPUS", "4")),
        app_instances=int(os.environ.get("POOL_APP_INSTANCES", "1")),
    )
    return create_async_engine(url, **settings.engine_kwargs())


def create_app(url: str | None = None) -> FastAPI:
    """The app; ``url`` defaults to ``$DATABASE_URL``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(url or os.environ["DATABASE_URL"])
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.engine = engine
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="sqlalchemy-crdb-async bank", lifespan=lifespan)

    @app.post("/accounts", status_code=201)
    async def open_account(body: NewAccount, maker: Sessions) -> AccountOut:
        async def insert(session: AsyncSession) -> Account:
            account = Account(owner=body.owner, balance=body.balance)
            session.add(account)
            await session.flush()
            return account

        account = await run_transaction(maker, insert, policy=POLICY)
        return AccountOut(id=account.id, owner=account.owner, balance=account.balance)

    @app.get("/accounts/{account_id}")
    async def get_account(account_id: int, maker: Sessions) -> AccountOut:
        async with maker() as session:
            account = await session.get(Account, account_id)
        if account is None:
            raise HTTPException(404, f"no account {account_id}")
        return AccountOut(id=account.id, owner=account.owner, balance=account.balance)

    @app.post("/transfers")
    async def transfer(body: Transfer, maker: Sessions) -> dict[str, Any]:
        if body.from_id == body.to_id:
            raise HTTPException(422, "from_id and to_id must differ")

        async def move(session: AsyncSession) -> Decimal:
            # Lock both rows in a fixed order: fewer retries under contention.
            rows = (
                await session.execute(
                    sa.select(Account)
                    .where(Account.id.in_([body.from_id, body.to_id]))
                    .order_by(Account.id)
                    .with_for_update()
                )
            ).scalars()
            accounts = {a.id: a for a in rows}
            missing = {body.from_id, body.to_id} - accounts.keys()
            if missing:
                raise HTTPException(404, f"no account {min(missing)}")
            source, target = accounts[body.from_id], accounts[body.to_id]
            if source.balance < body.amount:
                raise Overdrawn
            source.balance -= body.amount
            target.balance += body.amount
            return source.balance

        try:
            remaining = await run_transaction(maker, move, policy=POLICY)
        except Overdrawn:
            raise HTTPException(409, "insufficient funds") from None
        return {"from_balance": str(remaining)}

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        engine: AsyncEngine = request.app.state.engine
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        info = engine.dialect.server_info  # type: ignore[attr-defined]
        return {
            "server": info.describe(),
            "pool": dict(pool_stats(engine)),
            "retries": _plain(retry_stats(engine)),
        }

    return app


app = create_app()
