"""What code written for the older ``sqlalchemy-cockroachdb`` meets in the
dialect: ``disable_cockroachdb_telemetry`` in every place and on every driver
(a no-op: this package sends no telemetry), and reflection's keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.psycopg import CockroachDBDialect_psycopg
from sqlalchemy_crdb_async.dialect.psycopg2 import CockroachDBDialect_psycopg2

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

TELEMETRY = "disable_cockroachdb_telemetry"
ASYNC_SCHEMES = [
    "cockroachdb+asyncpg",
    "cockroachdb+psycopg",
    "cockroachdb+psycopg_async",
    "cockroachdb",
]
SYNC_SCHEMES = ["cockroachdb+psycopg", "cockroachdb+psycopg2", "cockroachdb"]
PLACES = ["url", "connect_args", "create_engine"]


def _engine_args(url: URL, scheme: str, place: str) -> tuple[URL, dict[str, Any]]:
    url = url.set(drivername=scheme)
    if place == "url":
        return url.update_query_dict({TELEMETRY: "true"}), {}
    if place == "connect_args":
        return url, {"connect_args": {TELEMETRY: True}}
    return url, {TELEMETRY: True}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("scheme", ASYNC_SCHEMES)
async def test_disable_telemetry_is_accepted_async(
    crdb_url: URL, scheme: str, place: str
) -> None:
    url, kwargs = _engine_args(crdb_url, scheme, place)
    engine = create_async_engine(url, **kwargs)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("scheme", SYNC_SCHEMES)
def test_disable_telemetry_is_accepted_sync(
    crdb_url: URL, scheme: str, place: str
) -> None:
    url, kwargs = _engine_args(crdb_url, scheme, place)
    engine = sa.create_engine(url, **kwargs)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "dialect_cls",
    [
        CockroachDBDialect_asyncpg,
        CockroachDBDialect_psycopg,
        CockroachDBDialect_psycopg2,
    ],
)
def test_disable_telemetry_never_reaches_the_driver(
    crdb_url: URL, dialect_cls: type[Any]
) -> None:
    url = crdb_url.set(drivername="cockroachdb").update_query_dict(
        {TELEMETRY: "true", "application_name": "kept"}
    )
    cargs, cparams = dialect_cls(**{TELEMETRY: True}).create_connect_args(url)
    assert TELEMETRY not in repr((cargs, cparams))
    assert "kept" in repr((cargs, cparams))


def test_other_unknown_url_parameters_are_still_refused(crdb_url: URL) -> None:
    from sqlalchemy_crdb_async import ConnectParameterError

    url = crdb_url.set(drivername="cockroachdb+asyncpg").update_query_dict(
        {"disable_cockroachdb_telemetri": "true"}
    )
    with pytest.raises(ConnectParameterError, match="disable_cockroachdb_telemetri"):
        create_async_engine(url).dialect.create_connect_args(url)


async def test_reflected_columns_keep_the_older_is_hidden_key(
    crdb_url: URL,
) -> None:
    engine = create_async_engine(crdb_url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP TABLE IF EXISTS legacy_hidden")
            await conn.exec_driver_sql(
                "CREATE TABLE legacy_hidden (id INT PRIMARY KEY, note TEXT)"
            )
            columns = await conn.run_sync(
                lambda c: sa.inspect(c).get_columns("legacy_hidden")
            )
            await conn.exec_driver_sql("DROP TABLE legacy_hidden")
    finally:
        await engine.dispose()
    assert [(c["name"], c["is_hidden"]) for c in columns] == [  # type: ignore[typeddict-item]
        ("id", False),
        ("note", False),
    ]


def test_index_options_postgresql_spelling_still_compiles() -> None:
    """Reflection says ``cockroachdb_*``; models written with the older
    package's ``postgresql_*`` index options still compile the same."""
    from sqlalchemy.schema import CreateIndex

    from sqlalchemy_crdb_async.dialect.server import parse_server_version

    dialect = CockroachDBDialect_asyncpg()
    dialect.server_info = parse_server_version(
        "CockroachDB CCL v25.2.1 (x86_64-pc-linux-gnu, built 2025/06/02 23:17:23, "
        "go1.23.7 X:nocoverageredesign)",
        "13.0.0",
    )
    t = sa.Table(
        "t", sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("b", sa.Text)
    )
    old = sa.Index(
        "ix_old", t.c.a, postgresql_include=["b"], postgresql_where=t.c.a > 1
    )
    new = sa.Index(
        "ix_new", t.c.a, cockroachdb_storing=["b"], cockroachdb_where=t.c.a > 1
    )
    old_sql = str(CreateIndex(old).compile(dialect=dialect))
    new_sql = str(CreateIndex(new).compile(dialect=dialect))
    assert old_sql.replace("ix_old", "ix") == new_sql.replace("ix_new", "ix")
    assert "STORING (b) WHERE a > 1" in new_sql
