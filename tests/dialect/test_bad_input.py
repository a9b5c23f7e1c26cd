"""Bad input by the thousand (hypothesis): URL parameters, isolation levels, and
the SQL the library builds from user text (AS OF SYSTEM TIME values, index
hints, application_name).

Every invalid value raises an error naming the parameter; no password shows in
a message, a log record or a repr; user text reaches SQL only quoted, which the
server itself confirms by reading it back unchanged.
"""

from __future__ import annotations

import logging
import string
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import ConnectParameterError
from sqlalchemy_crdb_async.dialect._libpq import asyncpg_connect_kwargs
from sqlalchemy_crdb_async.dialect.constructs import _aost_sql, index_hint

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sqlalchemy.ext.asyncio import AsyncEngine

PASSWORD = "Pw-d0nt-l3ak-7f3a"
# what PostgreSQL keeps as is in application_name (others become "?")
PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))
FAST = settings(max_examples=150, deadline=None)
ON_SERVER = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
KNOWN = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "command_timeout",
    "timeout",
    "statement_cache_size",
    "prepared_statement_cache_size",
    "direct_tls",
    "application_name",
]
names = st.one_of(st.sampled_from(KNOWN), st.text(min_size=1, max_size=20))
values = st.one_of(
    st.sampled_from(["", "-1", "0", "nan", "inf", "1e309", "true", "maybe", "/nope"]),
    st.text(max_size=30),
)
# PostgreSQL text cannot hold NUL; anything else goes
pg_text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
    max_size=40,
)


def raised(fn: Callable[[], object]) -> BaseException | None:
    """The exception ``fn()`` raises, or None."""
    try:
        fn()
    except Exception as err:
        return err
    return None


@FAST
@given(st.dictionaries(names, values, min_size=1, max_size=4))
def test_url_parameters_accepted_or_named_in_the_error(
    query: dict[str, str],
) -> None:
    try:
        asyncpg_connect_kwargs(query)
    except ConnectParameterError as err:
        message = str(err)
        assert any(repr(name) in message for name in query)
        assert PASSWORD not in message


@pytest.mark.parametrize("name", ["command_timeout", "timeout"])
@FAST
@given(value=values)
def test_bad_timeouts_are_refused(name: str, value: str) -> None:
    kwargs: dict[str, Any] = {}
    err = raised(lambda: kwargs.update(asyncpg_connect_kwargs({name: value})))
    if err is None:
        assert 0 < kwargs[name] < float("inf")
    else:
        assert isinstance(err, ConnectParameterError)
        assert name in str(err)
        assert "> 0" in str(err)


@FAST
@given(st.dictionaries(names, values, min_size=1, max_size=3))
def test_password_never_in_message_log_or_repr(
    query: dict[str, str],
) -> None:
    url = URL.create(
        "cockroachdb+asyncpg",
        username="u",
        password=PASSWORD,
        host="127.0.0.1",
        port=1,
        database="d",
        query={**query, "sslpassword": PASSWORD},
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    engines: list[AsyncEngine] = []
    try:
        err = raised(lambda: engines.append(create_async_engine(url)))
    finally:
        root.removeHandler(handler)
    assert PASSWORD not in str(err)
    assert PASSWORD not in repr(err)
    for engine in engines:
        assert PASSWORD not in repr(engine)
        assert PASSWORD not in repr(engine.url)
        engine.sync_engine.dispose()
    assert not any(PASSWORD in r.getMessage() for r in records)


@FAST
@given(pg_text)
def test_index_hint_quotes_any_name(name: str) -> None:
    if not name:
        with pytest.raises(sa.exc.ArgumentError, match="index name"):
            index_hint(name)
        return
    hint, _ = index_hint(name)
    rendered = hint[1:]
    if rendered.startswith('"'):
        assert rendered[1:-1].replace('""', '"') == name
        assert '"' not in rendered[1:-1].replace('""', "")
    else:
        assert set(rendered) <= set(string.ascii_letters + string.digits + "_$")


@pytest.fixture
async def raw(crdb_url: URL) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(
        host=crdb_url.host,
        port=crdb_url.port,
        user=crdb_url.username,
        password=crdb_url.password,
        database=crdb_url.database,
    )
    try:
        yield conn
    finally:
        await conn.close()


@ON_SERVER
@given(pg_text.filter(lambda s: s.strip()))
async def test_as_of_system_time_text_is_one_literal(
    raw: asyncpg.Connection, value: str
) -> None:
    # the clause's literal, read back by the server: nothing escaped it
    literal = _aost_sql(value)
    assert await raw.fetchval(f"SELECT {literal}::text") == value.strip()


@ON_SERVER
@given(pg_text.filter(lambda s: s and len(s.encode()) <= 63))
async def test_index_name_is_one_identifier(raw: asyncpg.Connection, name: str) -> None:
    hint, _ = index_hint(name)
    record = await raw.fetchrow(f"SELECT 1 AS {hint[1:]}")
    assert record is not None
    assert list(record.keys()) == [name]


@ON_SERVER
@given(st.text(alphabet=PRINTABLE_ASCII, max_size=60))
async def test_application_name_is_never_sql(crdb_url: URL, value: str) -> None:
    url = crdb_url.update_query_dict({"application_name": value})
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            shown = await conn.scalar(sa.text("SHOW application_name"))
    finally:
        await engine.dispose()
    # PostgreSQL keeps printable ASCII as is (and drops nothing here)
    assert shown == value


ISOLATION = st.one_of(
    st.sampled_from(["serializable", "READ  COMMITTED", "SNAPSHOT", "", "AUTOCOMMITT"]),
    st.text(max_size=20),
)


@ON_SERVER
@given(ISOLATION)
async def test_isolation_level_invalid_names_the_valid_ones(
    crdb_url: URL, level: str
) -> None:
    engine = create_async_engine(crdb_url)
    try:
        async with engine.connect() as conn:
            err: BaseException | None = None
            try:
                await conn.execution_options(isolation_level=level)
            except sa.exc.ArgumentError as caught:
                err = caught
    finally:
        await engine.dispose()
    if err is None:
        assert level.upper().replace("_", " ") in {
            "SERIALIZABLE",
            "READ COMMITTED",
            "REPEATABLE READ",
            "READ UNCOMMITTED",
            "AUTOCOMMIT",
        }
    else:
        assert "isolation_level" in str(err)
        assert "SERIALIZABLE" in str(err)
