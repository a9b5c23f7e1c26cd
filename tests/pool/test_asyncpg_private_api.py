"""The private asyncpg (and SQLAlchemy adapter) API this package relies on.

asyncpg is not pinned to a range; each private use is guarded with a fallback
instead, and these tests fail loudly, naming what changed, when an installed
asyncpg or SQLAlchemy no longer matches what the package expects:

- ``asyncpg.Connection._introspect_types(self, typeoids, timeout)``, a
  coroutine overridden by ``pool/_type_cache.py`` (fallback: no sharing);
- ``asyncpg.Connection._addr``, the ``(host, port)`` a connection reached, read
  by ``pool/_pool.py`` to spread a multi-host URL (fallback: host unknown);
- ``asyncpg.Connection._get_statement``, ``_copy_out`` and ``_copy_in``, where
  ``pool/_reset.py`` pays a session reset owed to the next first message;
- SQLAlchemy's asyncpg adapter: ``AsyncAdapt_asyncpg_dbapi._asyncpg_error_translate``
  and the adapted connection's ``_connection`` (``dialect/asyncpg.py``).
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async.pool import _reset, _type_cache
from sqlalchemy_crdb_async.pool._records import host_of

if TYPE_CHECKING:
    import pytest
    from sqlalchemy.engine import URL


def test_asyncpg_still_has_the_introspection_hook() -> None:
    method = getattr(asyncpg.Connection, "_introspect_types", None)
    assert method is not None, (
        f"asyncpg {asyncpg.__version__} removed Connection._introspect_types: "
        "update pool/_type_cache.py"
    )
    assert inspect.iscoroutinefunction(method), (
        f"asyncpg {asyncpg.__version__}: Connection._introspect_types is no longer "
        "a coroutine function: update pool/_type_cache.py"
    )
    params = list(inspect.signature(method).parameters)
    assert params == ["self", "typeoids", "timeout"], (
        f"asyncpg {asyncpg.__version__}: Connection._introspect_types{params} "
        "changed its signature: update pool/_type_cache.py"
    )
    assert _type_cache.HOOK_SUPPORTED


def test_without_the_hook_types_are_not_shared_and_a_warning_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Changed(asyncpg.Connection):  # type: ignore[misc]
        async def _introspect_types(self, typeoids: Any) -> Any:  # type: ignore[override]
            raise AssertionError("not called")

    monkeypatch.setattr(_type_cache, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=_type_cache.__name__):
        cls = _type_cache.connection_class(_type_cache.SharedTypeCache(), Changed)
    assert cls is Changed
    assert any("_introspect_types" in r.message for r in caplog.records)


async def test_asyncpg_connection_has_addr_host_and_port(crdb_url: URL) -> None:
    engine = create_async_engine(crdb_url)
    try:
        async with engine.connect() as conn:
            fairy = await conn.get_raw_connection()
            driver = fairy.driver_connection
            assert isinstance(driver, asyncpg.Connection)
            addr = getattr(driver, "_addr", None)
            assert isinstance(addr, tuple), (
                f"asyncpg {asyncpg.__version__}: Connection._addr is {addr!r}, not "
                "(host, port): update host_of in pool/_records.py"
            )
            assert host_of(driver) == (crdb_url.host, crdb_url.port)
            # the adapter's private attribute dialect/asyncpg.py reads
            assert fairy.dbapi_connection._connection is driver  # type: ignore[union-attr]
    finally:
        await engine.dispose()


def test_sqlalchemy_asyncpg_adapter_error_table() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    mapping = dbapi._asyncpg_error_translate
    assert isinstance(mapping, dict)
    assert mapping[asyncpg.PostgresError] is dbapi.Error


def test_asyncpg_still_sends_every_statement_through_the_owed_reset_hooks() -> None:
    # pool/_reset.py: ResetWithRollback pays an owed session reset in these
    # before anything else goes out (execute() without arguments aside).
    for name in ("_get_statement", "_copy_out", "_copy_in"):
        method = getattr(asyncpg.Connection, name, None)
        assert inspect.iscoroutinefunction(method), (
            f"asyncpg {asyncpg.__version__}: Connection.{name} is gone or no longer "
            "a coroutine function: update ResetWithRollback in pool/_reset.py"
        )
    source = inspect.getsource(asyncpg.Connection._execute)
    source += inspect.getsource(asyncpg.Connection._executemany)
    assert "_get_statement" in inspect.getsource(asyncpg.Connection._do_execute), (
        f"asyncpg {asyncpg.__version__}: statements no longer go through "
        "_get_statement: update ResetWithRollback in pool/_reset.py"
    )
    assert "_do_execute" in source
    assert _reset.OWING_SUPPORTED
