"""Connection-pool tuning for asyncio services: settings, sizing, statistics.

The pool a CockroachDB operator would configure by hand, behind SQLAlchemy's
own entry point::

    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy_crdb_async import PoolSettings, pool_stats

    settings = PoolSettings.for_cluster(vcpus=12, app_instances=3)
    engine = create_async_engine(url, **settings.engine_kwargs())
    ...
    print(pool_stats(engine))   # {"pool_size": 16, "checked_out": 3, ...}

:meth:`PoolSettings.engine_kwargs` returns ``poolclass=``
:class:`~sqlalchemy_crdb_async.pool.CockroachPool` (a subclass of
SQLAlchemy's ``AsyncAdaptedQueuePool``) with the sizes and timeouts; the pool
then does, beyond SQLAlchemy's own pool:

- **Jittered, eager lifetimes.** Each connection gets its own deadline,
  ``max_lifetime_s`` shortened by up to ``lifetime_jitter_fraction``, so a
  pool filled at once does not reconnect at once. A connection past its
  deadline is closed when it is returned, or by a background task while it
  sits idle, not merely found stale at the next checkout.
- **Cheap liveness checks.** Only a connection idle for longer than
  ``idle_before_ping_s`` is pinged at checkout, with one round trip
  (``SELECT 1`` as a simple query; SQLAlchemy's asyncpg pre-ping opens and
  rolls back a transaction around its ping: three round trips).
- **Drains and dead sockets.** A connection that sees SQLSTATE 57P01 (node
  draining, ``pg_terminate_backend``) or a broken socket is invalidated at
  once; on a shutdown code the idle connections to the same host are closed
  too, and the others to that host are closed when returned. Connections to
  other hosts are left alone (SQLAlchemy would invalidate the whole pool).
- **Session reset on return** (``reset_on_return``): SET variables, temporary
  tables, cursors, advisory locks and LISTENs of one borrower do not leak to
  the next; a transaction left open by a cancelled ``BEGIN`` is rolled back.
  On asyncpg it costs no round trip of its own: it goes out with the closing
  ``ROLLBACK``, or, after a ``COMMIT``, with the next borrower's ``BEGIN``
  (so what it releases is released at the next use; :mod:`._reset`); a
  connection that ran only statements SQLAlchemy compiled that leave nothing
  behind (reads of pure builtins, and writes into tables no default of which
  can draw a sequence value) needs none and goes back with its plain
  ``ROLLBACK`` (:mod:`._statements`).
- **Multi-host URLs** (``?host=h1:26257&host=h2:26257``): each new connection
  goes to the host with the fewest open connections of this pool first
  (asyncpg tries hosts in order, so without this every connection lands on
  the first host).
- **Shared type introspection** (asyncpg): the types one connection looked
  up are reused by the pool's other connections, so a recycled connection
  does not run asyncpg's introspection query again; on CockroachDB that query
  takes seconds (https://github.com/MagicStack/asyncpg/issues/1163,
  https://github.com/cockroachdb/cockroach/issues/128774).
- **Cancellation-safe**: a task cancelled at checkout, ping, statement,
  commit or reset leaves no connection checked out and no transaction open.

Sizing
------
:meth:`PoolSettings.for_cluster` follows CockroachDB's guidance, "connections
= (number of cores * 4)" for the whole cluster, and "the sum of all the pool
sizes" of the services close to it; the idle limit equal to the pool size (no
overflow). Source: https://www.cockroachlabs.com/docs/stable/connection-pooling
("Sizing connection pools").

Statistics
----------
:func:`pool_stats` returns a :class:`PoolStats` snapshot, like psycopg_pool's
``get_stats()``; see :class:`PoolStats` for each key.

Caveats
-------
- Only ``create_async_engine`` (asyncio pools). Ping, session reset and
  introspection sharing use asyncpg directly; other async drivers get
  SQLAlchemy's generic ping and a reset through a DBAPI cursor.
- On CockroachDB the reset is ``RESET ROLE; RESET ALL`` (asyncpg's own pool
  sends no reset there at all; ``RESET ALL`` leaves the role alone) plus
  ``CLOSE ALL``/``DISCARD SEQUENCES``/``DISCARD TEMP`` where the server knows
  them; a statement the server lacks is left out for that pool, a transient
  refusal only discards the connection (:mod:`._reset`). ``DISCARD ALL`` is
  never sent: it deallocates the prepared statements asyncpg and SQLAlchemy
  cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PoolSettings"]

#: The pool class :meth:`PoolSettings.engine_kwargs` names. :mod:`._pool`
#: registers ``CockroachPool`` here when it defines it: the pool reads these
#: settings, so it imports this module, and this module must not import it
#: back (no import cycle). ``sqlalchemy_crdb_async.pool`` imports both.
POOL_CLASS: list[type[Any]] = []

#: CockroachDB: "connections = (number of cores * 4)" for the cluster
#: (https://www.cockroachlabs.com/docs/stable/connection-pooling).
CRDB_CONNECTIONS_PER_VCPU = 4


@dataclass(frozen=True)
class PoolSettings:
    """Pool knobs; every duration is in seconds and says so in its name.

    ``pool_size``
        Connections kept open (and the most checked out at once, with
        ``max_overflow``).
    ``max_overflow``
        Extra connections allowed under load, closed when returned. 0 by
        default: CockroachDB recommends the idle limit equal to the pool size.
    ``pool_timeout_s``
        How long a checkout waits for a free connection before
        :class:`sqlalchemy.exc.TimeoutError`.
    ``max_lifetime_s``
        Longest life of a connection; ``None`` for no limit.
    ``lifetime_jitter_fraction``
        Each connection's lifetime is shortened by a random fraction up to
        this, so connections opened together expire apart.
    ``idle_before_ping_s``
        A connection idle for longer than this is pinged at checkout;
        ``None`` never pings for idleness. A connection whose host just lost
        another connection is pinged anyway; one whose socket the server
        already closed is replaced without a ping.
    ``ping_timeout_s``
        A ping not answered in time counts as a dead connection.
    ``reset_on_return``
        Reset session state (SET variables, temporary tables, cursors,
        advisory locks, LISTEN) between borrowers; on asyncpg it shares a
        message with the closing ``ROLLBACK`` or the next ``BEGIN`` (no round
        trip of its own), otherwise one round trip per checkout.
    ``use_lifo``
        Hand out the most recently returned connection first.
    ``maintenance_interval_s``
        The shortest gap between two passes of the background task that closes
        idle connections past their lifetime, lost, or to a draining host. The
        task sleeps until the next such connection is due, not on a timer.
    ``share_type_introspection``
        asyncpg only: share type-introspection results between the pool's
        connections.

    Nothing here retries: a checkout that finds no free connection in
    ``pool_timeout_s`` raises SQLAlchemy's ``TimeoutError``. Raises
    ``ValueError`` or ``TypeError`` (naming the field and the accepted values)
    for an invalid setting. :meth:`for_cluster` sizes the pool for a cluster;
    :meth:`engine_kwargs` gives the keywords for ``create_async_engine``.

    Example::

        from sqlalchemy.ext.asyncio import create_async_engine

        from sqlalchemy_crdb_async import PoolSettings, pool_stats

        settings = PoolSettings(pool_size=4, max_lifetime_s=600.0)
        pooled = create_async_engine(url, **settings.engine_kwargs())
        async with pooled.connect() as conn:
            assert pool_stats(pooled)["checked_out"] == 1
        await pooled.dispose()
    """

    pool_size: int = 10
    max_overflow: int = 0
    pool_timeout_s: float = 30.0
    max_lifetime_s: float | None = 300.0
    lifetime_jitter_fraction: float = 0.1
    idle_before_ping_s: float | None = 1.0
    ping_timeout_s: float = 5.0
    reset_on_return: bool = True
    use_lifo: bool = False
    maintenance_interval_s: float = 1.0
    share_type_introspection: bool = True

    def __post_init__(self) -> None:
        _check_int("pool_size", self.pool_size, minimum=1)
        _check_int("max_overflow", self.max_overflow, minimum=0)
        _check_positive("pool_timeout_s", self.pool_timeout_s)
        if self.max_lifetime_s is not None:
            _check_positive("max_lifetime_s", self.max_lifetime_s, none_ok=True)
        _check_number("lifetime_jitter_fraction", self.lifetime_jitter_fraction)
        if not 0.0 <= self.lifetime_jitter_fraction < 1.0:
            raise ValueError(
                "PoolSettings.lifetime_jitter_fraction must be in [0, 1), got "
                f"{self.lifetime_jitter_fraction!r}; 0.1 shortens each lifetime by "
                "up to 10%."
            )
        if self.idle_before_ping_s is not None:
            _check_number("idle_before_ping_s", self.idle_before_ping_s)
            if self.idle_before_ping_s < 0:
                raise ValueError(
                    "PoolSettings.idle_before_ping_s must be >= 0 or None, got "
                    f"{self.idle_before_ping_s!r}; use None to never ping."
                )
        _check_positive("ping_timeout_s", self.ping_timeout_s)
        _check_positive("maintenance_interval_s", self.maintenance_interval_s)
        for name in ("reset_on_return", "use_lifo", "share_type_introspection"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(
                    f"PoolSettings.{name} must be True or False, got {value!r}"
                )

    @classmethod
    def for_cluster(
        cls,
        *,
        vcpus: int,
        app_instances: int = 1,
        connections_per_vcpu: int = CRDB_CONNECTIONS_PER_VCPU,
        **overrides: Any,
    ) -> PoolSettings:
        """Settings sized by CockroachDB's rule for a cluster of ``vcpus`` vCPUs.

        The cluster serves about ``connections_per_vcpu`` (4) active
        connections per vCPU in all; ``app_instances`` processes (each with
        one pool) share them, so each pool gets
        ``floor(vcpus * connections_per_vcpu / app_instances)``, at least 1,
        and no overflow. ``overrides`` set any other field. Source:
        https://www.cockroachlabs.com/docs/stable/connection-pooling
        """
        _check_int("vcpus", vcpus, minimum=1, owner="PoolSettings.for_cluster")
        _check_int(
            "app_instances", app_instances, minimum=1, owner="PoolSettings.for_cluster"
        )
        _check_int(
            "connections_per_vcpu",
            connections_per_vcpu,
            minimum=1,
            owner="PoolSettings.for_cluster",
        )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"PoolSettings.for_cluster got unknown setting(s) {unknown}; valid "
                f"ones are {sorted(known)}"
            )
        per_instance = max(1, math.floor(vcpus * connections_per_vcpu / app_instances))
        params: dict[str, Any] = {"pool_size": per_instance, "max_overflow": 0}
        params.update(overrides)
        return cls(**params)

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_async_engine(url, **kwargs)``.

        They include ``poolclass`` (:class:`._pool.CockroachPool`) and
        ``crdb_pool_settings`` (this object, read by that pool). SQLAlchemy's
        own ``pool_pre_ping`` and ``pool_recycle`` are off: the pool pings and
        recycles itself.
        """
        return {
            "poolclass": POOL_CLASS[0],
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout_s,
            "pool_use_lifo": self.use_lifo,
            "pool_pre_ping": False,
            "pool_recycle": -1,
            "pool_reset_on_return": "rollback",
            "crdb_pool_settings": self,
        }


def _check_int(name: str, value: object, *, minimum: int, owner: str = "") -> None:
    where = owner or "PoolSettings"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}.{name} must be >= {minimum}, got {value!r}")


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"PoolSettings.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"PoolSettings.{name} must be finite, got {value!r}")


def _check_positive(name: str, value: object, *, none_ok: bool = False) -> None:
    _check_number(name, value)
    assert isinstance(value, (int, float))
    if value <= 0:
        hint = "; use None for no limit" if none_ok else ""
        raise ValueError(f"PoolSettings.{name} must be > 0, got {value!r}{hint}")
