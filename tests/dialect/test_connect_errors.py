"""Connect failures as a new user meets them: the wrong engine factory for the
driver, and a server that refuses the login, on every driver."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, exc
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import DriverModeError
from sqlalchemy_crdb_async.errors import is_connect_failure

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
def test_create_engine_with_an_asyncio_driver_names_the_fix(
    crdb_url: URL, driver: str
) -> None:
    engine = create_engine(crdb_url.set(drivername=f"cockroachdb+{driver}"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "coroutine was never awaited"
            with pytest.raises(DriverModeError) as caught:
                engine.connect()
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "create_async_engine(" in message
    assert "cockroachdb+psycopg://" in message
    assert "cockroachdb+psycopg2://" in message
    assert isinstance(caught.value, exc.InvalidRequestError)  # as MissingGreenlet


def test_create_async_engine_with_psycopg2_names_the_fix() -> None:
    with pytest.raises(DriverModeError) as caught:
        create_async_engine("cockroachdb+psycopg2://root@h:26257/db")
    message = str(caught.value)
    assert "create_async_engine('cockroachdb+asyncpg://" in message
    assert "create_engine('cockroachdb+psycopg2://" in message


@pytest.mark.parametrize(
    ("change", "sqlstate"),
    [
        ({"username": "no_such_role"}, "28000"),  # invalid_authorization_specification
        ({"database": "no_such_database"}, "3D000"),  # invalid_catalog_name
    ],
    ids=["unknown-role", "unknown-database"],
)
@pytest.mark.parametrize("scheme", ["cockroachdb+asyncpg", "cockroachdb+psycopg"])
async def test_a_refused_login_is_an_operational_error(
    crdb_url: URL, scheme: str, change: dict[str, str], sqlstate: str
) -> None:
    engine = create_async_engine(crdb_url.set(drivername=scheme, **change))
    try:
        with pytest.raises(exc.OperationalError) as caught:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert is_connect_failure(caught.value)
    if scheme.endswith("asyncpg"):  # libpq does not report the code of a FATAL
        assert caught.value.orig.sqlstate == sqlstate  # type: ignore[union-attr]


def test_sync_refused_login_is_an_operational_error(crdb_url: URL) -> None:
    engine = create_engine(
        crdb_url.set(drivername="cockroachdb+psycopg2", username="no_such_role")
    )
    try:
        with pytest.raises(exc.OperationalError) as caught:
            engine.connect()
    finally:
        engine.dispose()
    assert is_connect_failure(caught.value)


async def test_classify_tells_a_failed_connect_from_a_refused_login(
    crdb_url: URL,
) -> None:
    from sqlalchemy_crdb_async import ErrorKind, classify
    from sqlalchemy_crdb_async.testing.embedded import free_port

    async def error_of(url: URL) -> exc.OperationalError:
        engine = create_async_engine(url)
        try:
            with pytest.raises(exc.OperationalError) as caught:
                async with engine.connect():
                    pass
        finally:
            await engine.dispose()
        return caught.value

    refused = classify(await error_of(crdb_url.set(port=free_port())))
    assert refused.kind is ErrorKind.RETRY  # run_transaction rides out a restart
    assert refused.connect_failed
    assert refused.connection_lost
    login = classify(await error_of(crdb_url.set(username="no_such_role")))
    assert login.kind is ErrorKind.RAISE  # retrying changes nothing
