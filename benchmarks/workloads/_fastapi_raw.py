"""The reference endpoints: the example app's read and transfer on raw asyncpg.

:func:`raw_router` is mounted under ``/raw`` in the same FastAPI app as the
library's endpoints, with the same request and response models, so routing,
validation and JSON cost the same on both sides. The asyncpg pool lives on
``app.state.raw_pool``; retries are counted in ``app.state.raw_retries``.

No ``from __future__ import annotations``: FastAPI reads these annotations at
run time.
"""

import random
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request

from examples.fastapi_bank.app import AccountOut, TransferIn, TransferOut

from . import Ctx
from ._fastapi import READ_SQL, TransferRefused, transfer_on
from .bank import asyncpg_retry_loop

__all__ = ["raw_router"]


def raw_router() -> APIRouter:
    router = APIRouter(prefix="/raw")

    @router.get("/accounts/{account_id}")
    async def get_account(account_id: uuid.UUID, request: Request) -> AccountOut:
        row = await request.app.state.raw_pool.fetchrow(READ_SQL, account_id)
        if row is None:
            raise HTTPException(404, f"no account {account_id}")
        return AccountOut(id=row[0], owner=row[1], balance=row[2])

    @router.post("/transfers")
    async def transfer(
        body: TransferIn,
        request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> TransferOut:
        if body.from_id == body.to_id:
            raise HTTPException(422, "from_id and to_id must differ")
        ctx = Ctx(request.app.state.raw_pool, random.Random())
        done: list[Any] = []

        async def attempt(conn: Any) -> None:
            done[:] = [
                await transfer_on(
                    conn, body.from_id, body.to_id, body.amount, idempotency_key
                )
            ]

        try:
            await asyncpg_retry_loop(ctx, body.from_id, body.to_id, attempt)
        except TransferRefused as refused:
            raise HTTPException(*refused.args) from None
        finally:
            request.app.state.raw_retries.update(ctx.sqlstates)
        return TransferOut(**dict(done[0]))

    return router
