"""The FastAPI example (examples/fastapi_bank) works end to end on the test server."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from examples.fastapi_bank.app import Account, create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from sqlalchemy.engine import URL

CLIENTS = 64
TRANSFERS_EACH = 2
HOT_ACCOUNTS = 10


async def _serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as c:
            yield c


@pytest.fixture
async def client(crdb_url: URL) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(crdb_url.render_as_string(hide_password=False))
    async for c in _serve(app):
        yield c


async def _open(client: httpx.AsyncClient, owner: str, balance: str) -> str:
    response = await client.post("/accounts", json={"owner": owner, "balance": balance})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(params=["", "/fast"], ids=["orm", "fast-path"])
def way(request: pytest.FixtureRequest) -> str:
    """The endpoints' prefix: the ORM ones, or their fast-path twins."""
    return str(request.param)


async def _balance(client: httpx.AsyncClient, account: str, way: str = "") -> Decimal:
    response = await client.get(f"{way}/accounts/{account}")
    assert response.status_code == 200, response.text
    return Decimal(response.json()["balance"])


async def _all_transfers(client: httpx.AsyncClient, account: str) -> list[Any]:
    """Every transfer touching ``account``, page by page (bounded)."""
    items: list[Any] = []
    params: dict[str, Any] = {"account_id": account, "limit": 7}
    for _ in range(1000):
        page = (await client.get("/transfers", params=params)).json()
        items.extend(page["items"])
        if page["next"] is None:
            return items
        params["after"] = page["next"]
    raise AssertionError("GET /transfers did not reach its last page")


async def test_hot_accounts_under_64_clients_conserve_money(
    client: httpx.AsyncClient,
    way: str,
) -> None:
    ids = [await _open(client, f"hot{i}", "1000.00") for i in range(HOT_ACCOUNTS)]
    rng = random.Random(12)
    pairs = [
        [rng.sample(ids, 2) for _ in range(TRANSFERS_EACH)] for _ in range(CLIENTS)
    ]

    async def one_client(moves: list[list[str]]) -> list[int]:
        statuses = []
        for src, dst in moves:
            response = await client.post(
                f"{way}/transfers",
                json={"from_id": src, "to_id": dst, "amount": "1.00"},
            )
            statuses.append(response.status_code)
        return statuses

    answered = await asyncio.gather(*(one_client(p) for p in pairs))
    assert Counter(s for statuses in answered for s in statuses) == {
        200: CLIENTS * TRANSFERS_EACH
    }
    balances = {i: await _balance(client, i, way) for i in ids}
    assert sum(balances.values()) == Decimal("1000.00") * HOT_ACCOUNTS
    # Each balance is what the transfer ledger says, read through the pages.
    seen: set[str] = set()
    for account in ids:
        net = Decimal("1000.00")
        for t in await _all_transfers(client, account):
            seen.add(t["id"])
            net += Decimal(t["amount"]) * (
                (t["to_id"] == account) - (t["from_id"] == account)
            )
        assert net == balances[account]
    assert len(seen) == CLIENTS * TRANSFERS_EACH

    health = (await client.get("/healthz")).json()
    assert health["pool"]["checked_out"] == 0
    assert health["retries"]["commits"] >= CLIENTS * TRANSFERS_EACH


async def test_an_idempotency_key_moves_money_once(
    client: httpx.AsyncClient, way: str
) -> None:
    a = await _open(client, "ann", "10.00")
    b = await _open(client, "bob", "0.00")
    body = {"from_id": a, "to_id": b, "amount": "2.50"}
    headers = {"Idempotency-Key": f"rent-2026-11{way}"}
    first, second = await asyncio.gather(
        client.post(f"{way}/transfers", json=body, headers=headers),
        client.post(f"{way}/transfers", json=body, headers=headers),
    )
    again = await client.post(f"{way}/transfers", json=body, headers=headers)
    assert [r.status_code for r in (first, second, again)] == [200, 200, 200]
    assert first.json() == second.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _balance(client, a, way) == Decimal("7.50")
    assert await _balance(client, b, way) == Decimal("2.50")
    other = await client.post(
        f"{way}/transfers", json={**body, "amount": "1.00"}, headers=headers
    )
    assert other.status_code == 422
    assert await _balance(client, a, way) == Decimal("7.50")


async def test_errors_are_http_errors(client: httpx.AsyncClient, way: str) -> None:
    a = await _open(client, "ann", "5")
    # The stored balance, not the request's spelling of it.
    assert (await client.get(f"{way}/accounts/{a}")).json()["balance"] == "5.00"
    b = await _open(client, "bob", "999999999999.00")
    assert (
        await client.post(
            f"{way}/transfers", json={"from_id": a, "to_id": b, "amount": "9.00"}
        )
    ).status_code == 409  # overdraft
    overflow = await client.post(
        f"{way}/transfers", json={"from_id": a, "to_id": b, "amount": "1.00"}
    )
    assert overflow.status_code == 409  # past NUMERIC(14, 2)
    unknown = "00000000-0000-4000-8000-000000000000"
    missing = await client.post(
        f"{way}/transfers", json={"from_id": a, "to_id": unknown, "amount": "1.00"}
    )
    assert missing.status_code == 404
    same = await client.post(
        f"{way}/transfers", json={"from_id": a, "to_id": a, "amount": "1"}
    )
    assert same.status_code == 422
    assert (await client.get(f"{way}/accounts/{unknown}")).status_code == 404
    assert (await client.get(f"{way}/accounts/99999999999999999999")).status_code == 422
    assert (await client.get("/transfers", params={"after": "x"})).status_code == 422
    # Nothing moved.
    assert await _balance(client, a, way) == Decimal("5.00")
    assert await _balance(client, b, way) == Decimal("999999999999.00")


async def test_without_database_url_it_starts_its_own_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app()
    async for c in _serve(app):
        assert (await c.get("/healthz")).json()["server"]
        listed = await c.get("/transfers")
        assert listed.json() == {"items": [], "next": None}
        first = (await c.get("/accounts", params={"limit": 1})).json()
        rest = (await c.get("/accounts", params={"after": first[0]["id"]})).json()
        assert len(first) == len(rest) == 1
        async with app.state.sessions() as session:
            owners = set(await session.scalars(sa.select(Account.owner)))
        assert owners == {"alice", "bob"}
