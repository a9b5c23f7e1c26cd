"""Isolation levels: what the detected server supports, and clear errors otherwise."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.pool.support import wait_for

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

SHOW = sa.text("SHOW transaction_isolation")


async def _levels(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        return list(engine.dialect.get_isolation_level_values(raw.dbapi_connection))


async def test_supported_levels_follow_the_server(engine: AsyncEngine) -> None:
    levels = await _levels(engine)
    if engine.dialect.is_cockroachdb:
        expected = {"SERIALIZABLE", "AUTOCOMMIT"}
        # READ COMMITTED from v23.2 (tests/crdb_facts/session_vars.md section 2).
        if engine.dialect.crdb_at_least(23, 2):
            expected.add("READ COMMITTED")
        assert set(levels) == expected
    else:
        assert set(levels) == {
            "AUTOCOMMIT",
            "READ COMMITTED",
            "REPEATABLE READ",
            "SERIALIZABLE",
        }


@pytest.mark.parametrize("level", ["SERIALIZABLE", "READ COMMITTED", "REPEATABLE READ"])
async def test_each_transactional_level_is_applied(
    engine: AsyncEngine, level: str
) -> None:
    if level not in await _levels(engine):
        pytest.skip(
            f"{level} is not offered by {engine.dialect.server_info.describe()}"
        )
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level=level)
        shown = (await conn.execute(SHOW)).scalar()
    assert shown == level.lower()


async def test_engine_wide_isolation_level(crdb_url: URL) -> None:
    engine = create_async_engine(crdb_url, isolation_level="READ COMMITTED")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(SHOW)).scalar() == "read committed"
    finally:
        await engine.dispose()


async def test_autocommit_makes_each_statement_visible_at_once(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as setup:
        await setup.execute(sa.text("DROP TABLE IF EXISTS ac_probe"))
        await setup.execute(sa.text("CREATE TABLE ac_probe (id INT PRIMARY KEY)"))
    async with engine.connect() as writer, engine.connect() as reader:
        writer = await writer.execution_options(isolation_level="AUTOCOMMIT")
        await writer.execute(sa.text("INSERT INTO ac_probe VALUES (1)"))
        # No commit issued: another connection sees the row anyway.
        count = (
            await reader.execute(sa.text("SELECT count(*) FROM ac_probe"))
        ).scalar()
        assert count == 1


@pytest.mark.parametrize("bad", ["SNAPSHOT", "READ UNCOMMITED", "bogus"])
async def test_unknown_level_lists_the_valid_ones(
    engine: AsyncEngine, bad: str
) -> None:
    valid = await _levels(engine)
    async with engine.connect() as conn:
        with pytest.raises(ArgumentError) as info:
            await conn.execution_options(isolation_level=bad)
    message = str(info.value)
    assert repr(bad.upper()) in message
    for level in valid:
        assert level in message


async def test_unknown_engine_level_fails_at_connect_and_closes_it(
    crdb_url: URL, engine: AsyncEngine
) -> None:
    app = "isolation-chaos-probe"
    bad = create_async_engine(
        crdb_url.update_query_dict({"application_name": app}), isolation_level="CHAOS"
    )
    gc.disable()  # a leaked connection must not be rescued by the collector
    try:
        for _ in range(3):
            with pytest.raises(ArgumentError, match="SERIALIZABLE"):
                async with bad.connect():
                    pass
        await bad.dispose()
        # The refused connections were closed, not left for the collector. A
        # closed connection's backend exits once it reads the closed socket,
        # a moment after the client's close: wait for that, bounded.

        async def none_lingering() -> bool:
            async with engine.connect() as conn:
                lingering = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = :a"
                    ),
                    {"a": app},
                )
            return lingering == 0

        await wait_for(none_lingering, "the refused connections' backends to exit")
    finally:
        gc.enable()


@pytest.mark.crdb_only("its isolation levels (REPEATABLE READ refused)")
async def test_cockroachdb_refuses_repeatable_read(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(ArgumentError):
            await conn.execution_options(isolation_level="REPEATABLE READ")


# -- the gate on an engine's first connection ----------------------------------------
# A recorded CockroachDB answer to version() (tests/crdb_facts/version.json).
V23_2 = (
    "CockroachDB CCL v23.2.0 (x86_64-pc-linux-gnu, built 2024/01/16 19:30:18, "
    "go1.21.5 X:nocoverageredesign)"
)
V24_2 = (
    "CockroachDB CCL v24.2.3 (x86_64-pc-linux-gnu, built 2024/09/23 22:30:53, "
    "go1.22.5 X:nocoverageredesign)"
)
V24_3 = (
    "CockroachDB CCL v24.3.0 (aarch64-unknown-linux-gnu, built 2024/11/21 17:04:09, "
    "go1.22.8 X:nocoverageredesign)"
)


def _crdb_dialect(version: str) -> Any:
    from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
    from sqlalchemy_crdb_async.dialect.server import parse_server_version

    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(version, "13.0.0")
    return dialect


@pytest.mark.parametrize(
    ("version", "offered"),
    [(V23_2, False), (V24_2, False), (V24_3, True)],
)
def test_repeatable_read_is_offered_from_v24_3(version: str, offered: bool) -> None:
    levels = _crdb_dialect(version).get_isolation_level_values(None)
    assert ("REPEATABLE READ" in levels) is offered
    assert "READ COMMITTED" in levels


async def test_engine_level_is_checked_on_the_first_connection_too(
    crdb_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replays a recorded CockroachDB v23.2 version() answer in place of the
    embedded server's: REPEATABLE READ is refused there, on the engine's very
    first connection as on every later one (it used to pass the first time,
    judged by PostgreSQL's levels before server detection had run)."""
    from sqlalchemy_crdb_async.dialect import base, server

    real = server.parse_server_version

    def recorded(version: str, server_version: str) -> Any:
        return real(V23_2, "13.0.0")

    monkeypatch.setattr(base, "parse_server_version", recorded)
    bad = create_async_engine(crdb_url, isolation_level="REPEATABLE READ")
    try:
        for _ in range(2):
            with pytest.raises(ArgumentError, match="READ COMMITTED"):
                async with bad.connect():
                    pass
    finally:
        await bad.dispose()


async def test_engine_level_on_a_fresh_engine_is_applied(crdb_url: URL) -> None:
    engine = create_async_engine(crdb_url, isolation_level="SERIALIZABLE")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(SHOW)).scalar() == "serializable"
        assert engine.dialect.server_info is not None
    finally:
        await engine.dispose()
