"""PoolSettings: validation messages, CockroachDB sizing, engine keyword arguments."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_crdb_async import CockroachPool, PoolSettings, pool_stats


def test_defaults() -> None:
    s = PoolSettings()
    assert s.max_lifetime_s == 300.0
    assert s.lifetime_jitter_fraction == 0.1
    assert s.idle_before_ping_s == 1.0
    assert s.reset_on_return is True
    assert s.max_overflow == 0


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PoolSettings().pool_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pool_size": 0}, ValueError, "PoolSettings.pool_size must be >= 1, got 0"),
        (
            {"pool_size": 2.5},
            TypeError,
            "PoolSettings.pool_size must be an int, got 2.5",
        ),
        (
            {"pool_size": True},
            TypeError,
            "PoolSettings.pool_size must be an int, got True",
        ),
        (
            {"max_overflow": -1},
            ValueError,
            "PoolSettings.max_overflow must be >= 0, got -1",
        ),
        (
            {"pool_timeout_s": 0},
            ValueError,
            "PoolSettings.pool_timeout_s must be > 0, got 0",
        ),
        (
            {"max_lifetime_s": -5},
            ValueError,
            "PoolSettings.max_lifetime_s must be > 0, got -5; use None for no limit",
        ),
        (
            {"lifetime_jitter_fraction": 1.0},
            ValueError,
            "PoolSettings.lifetime_jitter_fraction must be in [0, 1), got 1.0; 0.1 "
            "shortens each lifetime by up to 10%.",
        ),
        (
            {"idle_before_ping_s": -1},
            ValueError,
            "PoolSettings.idle_before_ping_s must be >= 0 or None, got -1; use None "
            "to never ping.",
        ),
        (
            {"ping_timeout_s": float("nan")},
            ValueError,
            "PoolSettings.ping_timeout_s must be finite, got nan",
        ),
        (
            {"reset_on_return": "yes"},
            TypeError,
            "PoolSettings.reset_on_return must be True or False, got 'yes'",
        ),
        (
            {"maintenance_interval_s": "1"},
            TypeError,
            "PoolSettings.maintenance_interval_s must be a number, got '1'",
        ),
    ],
)
def test_validation_messages(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        PoolSettings(**kwargs)
    assert str(caught.value) == message


def test_none_disables_lifetime_and_ping() -> None:
    s = PoolSettings(max_lifetime_s=None, idle_before_ping_s=None)
    assert s.max_lifetime_s is None
    assert s.idle_before_ping_s is None


@pytest.mark.parametrize(
    ("vcpus", "instances", "size"),
    [(4, 1, 16), (12, 3, 16), (8, 3, 10), (1, 8, 1), (32, 4, 32)],
)
def test_for_cluster_shares_four_per_vcpu(
    vcpus: int, instances: int, size: int
) -> None:
    s = PoolSettings.for_cluster(vcpus=vcpus, app_instances=instances)
    assert s.pool_size == size
    assert s.max_overflow == 0


def test_for_cluster_overrides_and_ratio() -> None:
    s = PoolSettings.for_cluster(vcpus=10, connections_per_vcpu=2, max_lifetime_s=60.0)
    assert s.pool_size == 20
    assert s.max_lifetime_s == 60.0


def test_for_cluster_rejects_bad_input() -> None:
    with pytest.raises(
        ValueError, match=r"^PoolSettings.for_cluster.vcpus must be >= 1, got 0$"
    ):
        PoolSettings.for_cluster(vcpus=0)
    with pytest.raises(
        ValueError,
        match=r"^PoolSettings.for_cluster.app_instances must be >= 1, got 0$",
    ):
        PoolSettings.for_cluster(vcpus=4, app_instances=0)
    with pytest.raises(TypeError, match="unknown setting"):
        PoolSettings.for_cluster(vcpus=4, pool_sise=3)


def test_engine_kwargs_make_a_cockroach_pool() -> None:
    s = PoolSettings(pool_size=7, max_overflow=2, pool_timeout_s=3.0)
    kwargs = s.engine_kwargs()
    assert kwargs["poolclass"] is CockroachPool
    assert kwargs["pool_pre_ping"] is False
    eng = create_async_engine(
        "cockroachdb+asyncpg://root@localhost:26257/defaultdb", **kwargs
    )
    pool = eng.pool
    assert isinstance(pool, CockroachPool)
    assert pool.settings is s
    assert pool.size() == 7
    assert pool.timeout() == 3.0
    stats = pool_stats(eng)
    assert stats["pool_size"] == 7
    assert stats["pool_max"] == 9
    assert stats["checkouts"] == 0
    # dispose() recreates the pool with the same settings
    eng.sync_engine.dispose()
    assert isinstance(eng.pool, CockroachPool)
    assert eng.pool.settings is s


def test_pool_stats_names_the_fix_for_a_stock_engine() -> None:
    eng = create_async_engine("cockroachdb+asyncpg://root@localhost:26257/defaultdb")
    with pytest.raises(TypeError, match=r"PoolSettings\(\)\.engine_kwargs\(\)"):
        pool_stats(eng)


def test_pool_class_alone_takes_sqlalchemy_sizes() -> None:
    eng = create_async_engine(
        "cockroachdb+asyncpg://root@localhost:26257/defaultdb",
        poolclass=CockroachPool,
        pool_size=3,
    )
    stats = pool_stats(eng)
    assert stats["pool_size"] == 3
    assert stats["pool_max"] == 13  # SQLAlchemy's default max_overflow is 10
    assert isinstance(eng.pool, CockroachPool)
    assert eng.pool.settings == PoolSettings()
