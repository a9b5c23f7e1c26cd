"""Isolation levels: what the detected server supports, and clear errors otherwise."""

from __future__ import annotations

import gc
import warnings
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_crdb_async import IsolationLevelUpgradeWarning
from sqlalchemy_crdb_async.dialect._isolation import CHECK_SQL
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
        # READ COMMITTED from v23.2 (tests/crdb_facts/session_vars.md section 2),
        # REPEATABLE READ from v24.3 (tests/crdb_facts/settings.md section 1)
        if engine.dialect.crdb_at_least(23, 2):
            expected.add("READ COMMITTED")
        if engine.dialect.crdb_at_least(24, 3):
            expected.add("REPEATABLE READ")
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IsolationLevelUpgradeWarning)
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level=level)
            shown = (await conn.execute(SHOW)).scalar()
    upgraded = [w for w in caught if w.category is IsolationLevelUpgradeWarning]
    if not upgraded:
        assert shown == level.lower()
    else:  # CockroachDB with the level's cluster setting off: said, not silent
        assert engine.dialect.is_cockroachdb
        assert f"as {str(shown).upper()} " in str(upgraded[0].message)


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


@pytest.mark.crdb_only("REPEATABLE READ (v24.3+) behind its cluster setting")
async def test_cockroachdb_repeatable_read_runs_or_says_it_does_not(
    crdb_url: URL,
) -> None:
    # offered from v24.3; run as SERIALIZABLE while
    # sql.txn.repeatable_read_isolation.enabled is off (its default through
    # v26.2, tests/crdb_facts/settings.md section 1), and then a warning says so
    engine = create_async_engine(crdb_url)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IsolationLevelUpgradeWarning)
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                shown = (await conn.execute(SHOW)).scalar()
        upgraded = [w for w in caught if w.category is IsolationLevelUpgradeWarning]
        if shown == "repeatable read":
            assert not upgraded
        else:
            assert shown == "serializable"
            assert "sql.txn.repeatable_read_isolation.enabled" in str(
                upgraded[0].message
            )
    finally:
        await engine.dispose()


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


# -- levels the server upgrades: recorded answers -----------------------------------
# What a CockroachDB session answers to SHOW transaction_isolation inside a
# transaction begun at a weaker level: the effective level, lower case
# (tests/crdb_facts/settings.md section 2 transaction_isolation, section 3
# upgrade rules: with sql.txn.repeatable_read_isolation.enabled off, its default
# in v24.3, REPEATABLE READ runs as SERIALIZABLE; READ COMMITTED runs as
# REPEATABLE READ when only that setting is on, https://github.com/cockroachdb/cockroach/pull/129571).


class RecordedSession:
    """Stands where the driver's DBAPI connection does and replays one
    recorded answer to ``SHOW transaction_isolation``; records what is sent."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.sent: list[str] = []
        self.level: str | None = None
        self.rollbacks = 0

    def set_isolation_level(self, level: str) -> None:
        self.level = level

    def cursor(self) -> RecordedSession:
        return self

    def execute(self, sql: str, *args: Any) -> None:
        self.sent.append(sql)
        if isinstance(self.answer, Exception):
            raise self.answer

    def fetchone(self) -> tuple[str]:
        assert isinstance(self.answer, str)
        return (self.answer,)

    def close(self) -> None:
        pass

    def rollback(self) -> None:
        self.rollbacks += 1


@pytest.mark.parametrize(
    ("level", "answer", "setting"),
    [
        ("REPEATABLE READ", "serializable", "repeatable_read_isolation"),
        ("READ COMMITTED", "serializable", "read_committed_isolation"),
        ("READ COMMITTED", "repeatable read", "read_committed_isolation"),
    ],
)
def test_an_upgraded_level_is_said_once_naming_the_setting(
    level: str, answer: str, setting: str
) -> None:
    dialect = _crdb_dialect(V24_3)
    session = RecordedSession(answer)
    with pytest.warns(IsolationLevelUpgradeWarning) as caught:
        dialect.set_isolation_level(session, level)
    message = str(caught[0].message)
    assert f"runs {level} transactions as {answer.upper()}" in message
    assert f"sql.txn.{setting}.enabled" in message
    # the check asks the transaction, never SHOW CLUSTER SETTING (42501 for
    # most users: tests/crdb_facts/settings.md section 5), and leaves none open
    assert session.sent == [CHECK_SQL]
    assert session.rollbacks == 1
    assert session.level == level.lower().replace(" ", "_")  # asyncpg spelling
    # once per engine and level: the next connection is not asked again
    again = RecordedSession(answer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dialect.set_isolation_level(again, level)
    assert again.sent == []


def test_a_level_the_server_runs_is_silent() -> None:
    dialect = _crdb_dialect(V24_3)
    session = RecordedSession("repeatable read")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dialect.set_isolation_level(session, "REPEATABLE READ")
        dialect.set_isolation_level(RecordedSession("x"), "SERIALIZABLE")
    assert dialect.crdb_checked_levels == {"REPEATABLE READ": "REPEATABLE READ"}


def test_a_check_that_fails_says_the_level_is_unverified() -> None:
    dialect = _crdb_dialect(V24_3)
    session = RecordedSession(RuntimeError("connection reset"))
    with pytest.warns(IsolationLevelUpgradeWarning, match="Could not verify"):
        dialect.set_isolation_level(session, "REPEATABLE READ")
    assert session.rollbacks == 1
    assert dialect.crdb_checked_levels == {"REPEATABLE READ": None}


async def test_the_check_runs_through_the_real_driver(
    crdb_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CockroachDB mode on the embedded server (a recorded v24.3.0 version()
    answer): the check opens a REPEATABLE READ transaction through asyncpg,
    which PostgreSQL runs as asked, so nothing is said."""
    from sqlalchemy_crdb_async.dialect import base, server

    real = server.parse_server_version
    monkeypatch.setattr(
        base, "parse_server_version", lambda v, sv: real(V24_3, "13.0.0")
    )
    eng = create_async_engine(crdb_url, isolation_level="REPEATABLE READ")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", IsolationLevelUpgradeWarning)
            async with eng.connect() as conn:
                assert (await conn.execute(SHOW)).scalar() == "repeatable read"
        assert eng.dialect.crdb_checked_levels == {  # type: ignore[attr-defined]
            "REPEATABLE READ": "REPEATABLE READ"
        }
    finally:
        await eng.dispose()
