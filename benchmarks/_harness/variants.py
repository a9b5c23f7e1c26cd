"""The variants every workload is measured with, side by side in one run.

==========================  ===================================================
key                         what it is
==========================  ===================================================
``asyncpg``                 raw ``asyncpg.create_pool``: the reference (ratio
                            1.0); the pool resets each connection on release
                            (``Connection.reset()``: one extra round trip)
``asyncpg-noreset``         raw asyncpg with the pool's server-side reset
                            disabled (a no-op ``reset=`` coroutine, asyncpg
                            0.30+): the round-trip floor
``sqlalchemy``              SQLAlchemy's stock ``postgresql+asyncpg`` dialect
``sqlalchemy-cockroachdb``  Cockroach Labs' ``sqlalchemy-cockroachdb``
                            ``cockroachdb+asyncpg``, installed on demand
                            without dependencies (:mod:`benchmarks._harness.legacy`)
``ours``                    this package's ``cockroachdb+asyncpg``
``ours-pool``               ours with ``PoolSettings(...).engine_kwargs()``
                            (the pool-tuning work); checkout storm and
                            point reads
``ours-fastapi``            the example app ``examples/fastapi_bank``, its
                            lifespan entered, driven in process by httpx's
                            ``ASGITransport``; FastAPI workloads only
``asyncpg-fastapi``         the same app with the same endpoints on raw
                            asyncpg mounted under ``/raw`` (the FastAPI
                            workloads' reference)
==========================  ===================================================

Every variant opens a fresh pool or engine per cell, sized to the cell's
concurrency (``pool_size=n, max_overflow=0``; asyncpg ``min_size=max_size=n``),
and closes it after, so cells do not share warm connections.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .apis import missing_api, ours_api
from .legacy import load_legacy_dialect

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.engine import URL

__all__ = ["VARIANTS", "Variant", "asyncpg_connect_kwargs"]

POOL_TIMEOUT_S = 120.0


def asyncpg_connect_kwargs(url: URL) -> dict[str, Any]:
    """``asyncpg.connect`` keywords for ``url``, libpq parameters translated."""
    from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg

    dialect = CockroachDBDialect_asyncpg()
    _, kwargs = dialect.create_connect_args(url.set(drivername="cockroachdb+asyncpg"))
    return dict(kwargs)


async def _no_reset(conn: Any) -> None:
    """Skip asyncpg's server-side reset query (a local ROLLBACK still runs)."""


async def _open_asyncpg(url: URL, pool_size: int, *, reset: bool) -> Any:
    import asyncpg

    kwargs = asyncpg_connect_kwargs(url)
    if not reset:
        kwargs["reset"] = _no_reset
    return await asyncpg.create_pool(min_size=pool_size, max_size=pool_size, **kwargs)


async def _close_asyncpg(pool: Any) -> None:
    await pool.close()


def _sqlalchemy_opener(
    drivername: str, extra: Callable[[int], dict[str, Any]] | None = None
) -> Callable[[URL, int], Awaitable[Any]]:
    async def open_engine(url: URL, pool_size: int) -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine

        kwargs: dict[str, Any] = (
            extra(pool_size)
            if extra is not None
            else {
                "pool_size": pool_size,
                "max_overflow": 0,
                "pool_timeout": POOL_TIMEOUT_S,
            }
        )
        return create_async_engine(url.set(drivername=drivername), **kwargs)

    return open_engine


async def _close_engine(engine: Any) -> None:
    await engine.dispose()


def _pool_settings_kwargs(pool_size: int) -> dict[str, Any]:
    settings = ours_api("PoolSettings")(
        pool_size=pool_size, max_overflow=0, pool_timeout_s=POOL_TIMEOUT_S
    )
    return dict(settings.engine_kwargs())


@dataclass
class FastAPIHandle:
    """The example app, started (its lifespan entered), and a client for it."""

    app: Any
    client: Any
    lifespan: Any

    @property
    def engine(self) -> Any:
        return self.app.state.engine


async def _open_fastapi(
    url: URL, pool_size: int, *, raw: bool = False
) -> FastAPIHandle:
    import httpx

    from ..workloads._fastapi import app_module
    from ..workloads.bank import BACKOFF_BASE_S, BACKOFF_CAP_S, MAX_ATTEMPTS

    # Both sides: a pool of pool_size connections, the plain loop's backoff.
    app = app_module().create_app(
        url.set(drivername="cockroachdb+asyncpg").render_as_string(hide_password=False),
        demo_accounts=False,
        pool=ours_api("PoolSettings")(
            pool_size=pool_size, max_overflow=0, pool_timeout_s=POOL_TIMEOUT_S
        ),
        policy=ours_api("RetryPolicy")(
            max_attempts=MAX_ATTEMPTS,
            initial_backoff_s=BACKOFF_BASE_S,
            max_backoff_s=BACKOFF_CAP_S,
        ),
    )
    if raw:
        from ..workloads._fastapi_raw import raw_router

        app.include_router(raw_router())
        app.state.raw_pool = await _open_asyncpg(url, pool_size, reset=True)
        app.state.raw_retries = Counter()
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://bench")
    return FastAPIHandle(app, client, lifespan)


async def _open_raw_fastapi(url: URL, pool_size: int) -> FastAPIHandle:
    return await _open_fastapi(url, pool_size, raw=True)


async def _close_fastapi(handle: FastAPIHandle) -> None:
    try:
        await handle.client.aclose()
    finally:
        try:
            raw_pool = getattr(handle.app.state, "raw_pool", None)
            if raw_pool is not None:
                await raw_pool.close()
        finally:
            await handle.lifespan.__aexit__(None, None, None)


def _fastapi_reason() -> str | None:
    from ..workloads._fastapi import app_unavailable

    return app_unavailable()


def _legacy_reason() -> str | None:
    return load_legacy_dialect().reason


def _pool_settings_reason() -> str | None:
    return missing_api(("PoolSettings",), "the pool tuning is")


@dataclass(frozen=True)
class Variant:
    """How to open and close one contender's pool or engine."""

    key: str
    label: str
    kind: Literal["asyncpg", "sqlalchemy", "fastapi"]
    open: Callable[[URL, int], Awaitable[Any]]
    close: Callable[[Any], Awaitable[None]]
    requires: Callable[[], str | None] | None = None

    def unavailable_reason(self) -> str | None:
        return self.requires() if self.requires is not None else None


async def _open_asyncpg_reset(url: URL, pool_size: int) -> Any:
    return await _open_asyncpg(url, pool_size, reset=True)


async def _open_asyncpg_noreset(url: URL, pool_size: int) -> Any:
    return await _open_asyncpg(url, pool_size, reset=False)


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant(
            "asyncpg",
            "raw asyncpg Pool",
            "asyncpg",
            _open_asyncpg_reset,
            _close_asyncpg,
        ),
        Variant(
            "asyncpg-noreset",
            "raw asyncpg, no pool reset",
            "asyncpg",
            _open_asyncpg_noreset,
            _close_asyncpg,
        ),
        Variant(
            "sqlalchemy",
            "SQLAlchemy postgresql+asyncpg",
            "sqlalchemy",
            _sqlalchemy_opener("postgresql+asyncpg"),
            _close_engine,
        ),
        Variant(
            "sqlalchemy-cockroachdb",
            "sqlalchemy-cockroachdb",
            "sqlalchemy",
            _sqlalchemy_opener("crdb_legacy+asyncpg"),
            _close_engine,
            _legacy_reason,
        ),
        Variant(
            "ours",
            "sqlalchemy-crdb-async",
            "sqlalchemy",
            _sqlalchemy_opener("cockroachdb+asyncpg"),
            _close_engine,
        ),
        Variant(
            "ours-pool",
            "sqlalchemy-crdb-async + PoolSettings",
            "sqlalchemy",
            _sqlalchemy_opener("cockroachdb+asyncpg", _pool_settings_kwargs),
            _close_engine,
            _pool_settings_reason,
        ),
        Variant(
            "ours-fastapi",
            "examples/fastapi_bank over ASGI",
            "fastapi",
            _open_fastapi,
            _close_fastapi,
            _fastapi_reason,
        ),
        Variant(
            "asyncpg-fastapi",
            "the same app, endpoints on raw asyncpg",
            "fastapi",
            _open_raw_fastapi,
            _close_fastapi,
            _fastapi_reason,
        ),
    )
}
