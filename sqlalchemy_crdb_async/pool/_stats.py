"""``PoolStats``: the snapshot :func:`~sqlalchemy_crdb_async.pool_stats` returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

    from ._records import Counters

__all__ = ["PoolStats", "snapshot"]


class PoolStats(TypedDict):
    """A snapshot of one pool; counters count since the pool was created
    (``engine.dispose()`` replaces the pool, and so starts them again).

    ``pool_size``             configured size (connections kept open)
    ``pool_max``              most connections at once (size + overflow; -1 when
                              the overflow is unlimited)
    ``connections``           connections open now
    ``checked_out``           connections lent out now
    ``idle``                  open connections waiting in the pool now
    ``waiting``               checkouts waiting for a connection now
    ``wait_time_s``           total time checkouts waited (includes connecting)
    ``checkouts``             connections handed out
    ``timeouts``              checkouts that gave up after ``pool_timeout_s``
    ``connections_opened``    new connections made
    ``connections_lost``      connections found dead (broken socket, failed ping,
                              disconnect error)
    ``recycled_by_lifetime``  connections closed for passing their lifetime
    ``invalidated_by_drain``  connections dropped because the server said it is
                              shutting down (SQLSTATE 57P01/57P02/57P03)
    ``pings_sent``            liveness pings sent
    ``resets``                session resets, each counted once: when a
                              return sends one (with the closing
                              ``ROLLBACK`` or on its own), or when a
                              return leaves one owed to the connection's
                              next first message (``pool/_reset.py``). A
                              return that finds the reset still owed (the
                              connection came back unused, or only
                              pinged) counts nothing, nor does paying it;
                              an owed reset counts even if the connection
                              closes before paying. A connection that sent
                              nothing that leaves session state behind
                              needs none (reads, and writes that draw no
                              sequence value, that SQLAlchemy compiled;
                              ``pool/_statements.py``)
    ``types_shared``          type introspections answered from the pool's
                              shared cache instead of a query
    """

    pool_size: int
    pool_max: int
    connections: int
    checked_out: int
    idle: int
    waiting: int
    wait_time_s: float
    checkouts: int
    timeouts: int
    connections_opened: int
    connections_lost: int
    recycled_by_lifetime: int
    invalidated_by_drain: int
    pings_sent: int
    resets: int
    types_shared: int


def snapshot(
    c: Counters,
    records: list[ConnectionPoolEntry],
    size: int,
    overflow: int,
    types_shared: int,
) -> PoolStats:
    """A pool's :class:`PoolStats` from its counters and records."""
    open_records = [r for r in records if r.dbapi_connection is not None]
    return PoolStats(
        pool_size=size,
        pool_max=size + overflow if overflow >= 0 else -1,
        connections=len(open_records),
        checked_out=sum(1 for r in records if r.in_use),
        idle=sum(1 for r in open_records if not r.in_use),
        waiting=c.waiting,
        wait_time_s=c.wait_time_s,
        checkouts=c.checkouts,
        timeouts=c.timeouts,
        connections_opened=c.connections_opened,
        connections_lost=c.connections_lost,
        recycled_by_lifetime=c.recycled_by_lifetime,
        invalidated_by_drain=c.invalidated_by_drain,
        pings_sent=c.pings_sent,
        resets=c.resets,
        types_shared=types_shared,
    )
