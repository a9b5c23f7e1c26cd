"""Server-side cursors (``stream()``, ``yield_per``) on CockroachDB.

CockroachDB refuses another statement on a connection whose suspended portal
(asyncpg's server-side cursor) is still open unless the session variable
``multiple_active_portals_enabled`` is on, which it is not by default
(tests/crdb_facts/settings.md section 2 and 2.1; the refusal, 0A000, in
tests/crdb_facts/errors_batch3.json ``0A000_multiple_active_portals``). The
asyncpg dialect turns it on before each server-side cursor on CockroachDB
v23.1+ and refuses the cursor below v23.1 (dialect/asyncpg.py).

The CockroachDB cases run the dialect's real hook in CockroachDB mode
(recorded ``SELECT version()`` answers, tests/crdb_facts/version.json) against
a connection that records what is sent; the PostgreSQL case streams for real.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.util import greenlet_spawn

from sqlalchemy_crdb_async import UnsupportedServerWarning
from sqlalchemy_crdb_async.dialect.asyncpg import (
    PORTALS_ON_SQL,
    prepare_server_side_cursor,
)
from tests import facts
from tests.conformance.checker import assert_conforms
from tests.conformance.recording import crdb_dialect

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class RecordingDriver:
    """Where the pool's asyncpg connection stands: records each message."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def execute(self, query: str) -> str:
        self.sent.append(query)
        return "SET"


class Fairy:
    def __init__(self) -> None:
        self.driver_connection = RecordingDriver()


def test_the_variable_is_recorded_off_by_default_from_v23_1() -> None:
    text = (facts.FACTS_DIR / "settings.md").read_text(encoding="utf-8")
    row = next(
        line for line in text.splitlines() if line.startswith("| `multiple_active_")
    )
    assert "| off (docs: `false`) | off (docs: `false`) |" in row
    assert "Added v23.1.0-beta.2" in row
    assert PORTALS_ON_SQL == "SET multiple_active_portals_enabled = on"
    assert_conforms(PORTALS_ON_SQL)


def _dialect(label: str) -> Any:
    if label >= "v24.3":
        return crdb_dialect(label)
    with pytest.warns(UnsupportedServerWarning):  # outside the support window
        return crdb_dialect(label)


@pytest.mark.parametrize("label", ["v24.3.0", "v25.2.1", "v23.1.2"])
async def test_portals_are_allowed_before_a_server_side_cursor(label: str) -> None:
    fairy = Fairy()
    await greenlet_spawn(prepare_server_side_cursor, _dialect(label), fairy)
    assert fairy.driver_connection.sent == [PORTALS_ON_SQL]


async def test_below_v23_1_a_server_side_cursor_is_refused_clearly() -> None:
    fairy = Fairy()
    with pytest.raises(sa.exc.InvalidRequestError) as info:
        await greenlet_spawn(prepare_server_side_cursor, _dialect("v22.2.7"), fairy)
    message = str(info.value)
    assert "22.2.7" in message
    assert "multiple_active_portals_enabled" in message
    assert "buffered" in message
    assert fairy.driver_connection.sent == []


async def test_the_hook_runs_for_stream_and_sends_nothing_on_postgresql(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy_crdb_async.dialect import asyncpg as crdb_asyncpg

    if engine.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip("checks the PostgreSQL side of the hook")
    if engine.dialect.driver != "asyncpg":
        pytest.skip("asyncpg's server-side cursors")
    calls: list[Any] = []
    real = crdb_asyncpg.prepare_server_side_cursor

    def spy(dialect: Any, dbapi_connection: Any) -> None:
        calls.append(dialect)
        real(dialect, dbapi_connection)

    monkeypatch.setattr(crdb_asyncpg, "prepare_server_side_cursor", spy)
    async with engine.connect() as conn:
        result = await conn.stream(sa.select(sa.func.generate_series(1, 5)))
        # another statement while the cursor is open
        assert await conn.scalar(sa.select(sa.literal(7))) == 7
        rows = [row[0] async for row in result]
    assert rows == [1, 2, 3, 4, 5]
    assert calls == [engine.dialect]
