"""The example app's transfers leave nothing for the pool's reset to undo.

``bank_accounts`` and ``bank_transfers`` have UUID keys made by
``gen_random_uuid()`` and a ``now()`` timestamp: no default can draw a
sequence value, so the judge of pool/_statements.py finds every statement of
a transfer harmless, on the fast path and the ORM way, and the pooled
connection goes back with a plain ``ROLLBACK`` or nothing at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa

from examples.fastapi_bank import app as bank
from sqlalchemy_crdb_async import PoolSettings, pool_stats
from sqlalchemy_crdb_async.fastpath import PreparedQuery
from sqlalchemy_crdb_async.pool._statements import statement_leaves_nothing

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# one connection, no ping between operations, whatever the machine's load
SETTINGS = PoolSettings(pool_size=1, idle_before_ping_s=None)

FAST = {
    name: value
    for name, value in vars(bank).items()
    if isinstance(value, PreparedQuery)
}


def test_the_app_prepares_its_transfer_statements() -> None:
    assert {"LOCK_PAIR", "SET_BALANCE", "RECORD_TRANSFER"} <= FAST.keys()


@pytest.mark.parametrize("name", sorted(FAST))
def test_each_fast_statement_is_judged_harmless(crdb_url: URL, name: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    dialect = create_async_engine(crdb_url).dialect
    assert FAST[name].plan_for(dialect).touches_session is False


@pytest.mark.parametrize(
    "statement",
    [
        sa.insert(bank.Transfer).values(amount=1),
        sa.insert(bank.Account).values(owner="a", balance=1),
        sa.update(bank.Account).values(balance=1).where(bank.Account.id == None),  # noqa: E711
    ],
    ids=["insert-transfer", "insert-account", "update-account"],
)
def test_the_orm_writes_are_judged_harmless(statement: sa.Executable) -> None:
    assert statement_leaves_nothing(statement) is True


@pytest.mark.parametrize("way", ["", "/fast"], ids=["orm", "fast-path"])
async def test_transfers_go_back_without_a_reset(crdb_url: URL, way: str) -> None:
    app = bank.create_app(
        crdb_url.render_as_string(hide_password=False),
        demo_accounts=False,
        pool=SETTINGS,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
            ids = []
            for owner in ("reset-a", "reset-b"):
                r = await c.post("/accounts", json={"owner": owner, "balance": "50"})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            body = {"from_id": ids[0], "to_id": ids[1], "amount": "1.00"}

            async def transfer() -> None:
                r = await c.post(f"{way}/transfers", json=body)
                assert r.status_code == 200, r.text

            await transfer()  # statements prepared on the connection
            before = pool_stats(app.state.engine)["resets"]
            for _ in range(3):
                await transfer()
            assert pool_stats(app.state.engine)["resets"] == before
