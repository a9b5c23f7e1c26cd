"""The FastAPI example (examples/fastapi_bank) works end to end on the test server."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from examples.fastapi_bank.app import create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import URL


@pytest.fixture
async def client(crdb_url: URL) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(crdb_url.render_as_string(hide_password=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as c:
            yield c


async def _open(client: httpx.AsyncClient, owner: str, balance: str) -> int:
    response = await client.post("/accounts", json={"owner": owner, "balance": balance})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def test_contended_transfers_conserve_money(client: httpx.AsyncClient) -> None:
    ids = [await _open(client, f"owner{i}", "100.00") for i in range(4)]

    async def transfer(n: int) -> httpx.Response:
        src, dst = ids[n % 4], ids[(n + 1) % 4]
        return await client.post(
            "/transfers", json={"from_id": src, "to_id": dst, "amount": "1.00"}
        )

    responses = await asyncio.gather(*(transfer(n) for n in range(120)))
    assert [r.status_code for r in responses] == [200] * 120
    balances = [
        Decimal((await client.get(f"/accounts/{i}")).json()["balance"]) for i in ids
    ]
    assert sum(balances) == Decimal("400.00")
    assert balances == [Decimal("100.00")] * 4  # each gave 30 and got 30

    health = (await client.get("/healthz")).json()
    assert health["pool"]["checked_out"] == 0
    assert health["retries"]["commits"] >= 120
    assert "server" in health


async def test_errors_are_http_errors(client: httpx.AsyncClient) -> None:
    a = await _open(client, "ann", "5.00")
    b = await _open(client, "bob", "0.00")
    over = await client.post(
        "/transfers", json={"from_id": a, "to_id": b, "amount": "9.00"}
    )
    assert over.status_code == 409
    missing = await client.post(
        "/transfers", json={"from_id": a, "to_id": 987654321, "amount": "1.00"}
    )
    assert missing.status_code == 404
    same = await client.post(
        "/transfers", json={"from_id": a, "to_id": a, "amount": "1"}
    )
    assert same.status_code == 422
    assert (await client.get("/accounts/987654321")).status_code == 404
    # Nothing moved.
    assert (await client.get(f"/accounts/{a}")).json()["balance"] == "5.00"
