"""What the pool knows of each connection, and its counters (internal).

A :class:`ConnState` lives in each pool record's ``info`` (:func:`state_of`
reads it back); :class:`ConnectionInfo` is its public view
(:meth:`.CockroachPool.connections`); :class:`Counters` holds the numbers
:func:`.pool_stats` reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "STATE_KEY",
    "ConnState",
    "ConnectionInfo",
    "Counters",
    "Host",
    "close_reason",
    "closed",
    "connection_infos",
    "host_of",
    "least_used_host",
    "mark_host",
    "next_due",
    "state_of",
]

STATE_KEY = "sqlalchemy_crdb_async.pool"

Host = tuple[str, int] | None


@dataclass(slots=True)
class ConnState:
    """What the pool knows of one open connection (in ``record.info``)."""

    host: Host
    opened: float
    #: This connection's own (jittered) lifetime; deadline = opened + lifetime.
    lifetime: float | None
    deadline: float | None
    last_used: float | None = None
    suspect: bool = False
    retire: bool = False
    lost: bool = False
    #: How its loss was counted: "lost" or "drain" (several paths can notice
    #: one loss; a shutdown SQLSTATE, seen later, turns "lost" into "drain").
    counted: str | None = None
    #: Its ``asyncpg.Connection`` (None for other drivers), kept here so the
    #: checkout and return paths need not ask SQLAlchemy for it each time.
    driver: Any = None
    #: ``driver`` is a ``_reset.ResetWithRollback`` (the pool resets sessions
    #: and the driver is asyncpg), known once at connect.
    resets: bool = False
    #: ``_do_get`` found a ping due; ``connect`` sends it (``CockroachPool``).
    ping_wanted: bool = False
    #: ``driver._protocol``: the checkout and return paths ask it directly
    #: (``is_connected()``, ``is_in_transaction()``: what asyncpg's public
    #: ``is_closed()`` and ``is_in_transaction()`` ask, one call less each).
    protocol: Any = None


@dataclass(frozen=True)
class ConnectionInfo:
    """One open connection, as :meth:`CockroachPool.connections` reports it."""

    host: Host
    age_s: float
    lifetime_s: float | None
    idle_s: float | None
    in_use: bool


@dataclass
class Counters:
    waiting: int = 0
    wait_time_s: float = 0.0
    checkouts: int = 0
    timeouts: int = 0
    connections_opened: int = 0
    connections_lost: int = 0
    recycled_by_lifetime: int = 0
    invalidated_by_drain: int = 0
    pings_sent: int = 0
    resets: int = 0

    def count_closed(self, state: ConnState, reason: str) -> None:
        """A connection closed for ``reason`` (``"lifetime"``, ``"lost"``,
        ``"drain"``: :func:`close_reason`)."""
        if reason == "lifetime":
            self.recycled_by_lifetime += 1
        else:
            self.count_loss(state, drain=reason == "drain")

    def count_loss(self, state: ConnState | None, *, drain: bool) -> None:
        """A connection lost (or drained), counted once however many paths
        notice it; a drain seen after a loss turns the loss into a drain."""
        if state is not None:
            if state.counted == "drain" or (state.counted == "lost" and not drain):
                return
            if state.counted == "lost":
                self.connections_lost -= 1
            state.counted = "drain" if drain else "lost"
        if drain:
            self.invalidated_by_drain += 1
        else:
            self.connections_lost += 1


def state_of(entry: Any) -> ConnState | None:
    info = getattr(entry, "info", None)
    if info is None:
        return None
    state = info.get(STATE_KEY)
    return state if isinstance(state, ConnState) else None


def host_of(driver: Any) -> Host:
    addr = getattr(driver, "_addr", None)  # asyncpg: the (host, port) it connected to
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return None


def connection_infos(
    records: list[ConnectionPoolEntry], now: float
) -> list[ConnectionInfo]:
    """The open ones among ``records``, as :class:`ConnectionInfo`."""
    out = []
    for record in records:
        state = state_of(record)
        if state is None or record.dbapi_connection is None:
            continue
        idle = None
        if state.last_used is not None and not record.in_use:
            idle = now - state.last_used
        out.append(
            ConnectionInfo(
                host=state.host,
                age_s=now - state.opened,
                lifetime_s=state.lifetime,
                idle_s=idle,
                in_use=record.in_use,
            )
        )
    return out


def least_used_host(
    records: list[ConnectionPoolEntry], candidates: list[tuple[Any, Any]], turn: int
) -> int:
    """The index in ``candidates`` (host, port) with the fewest open
    connections among ``records``; ties go round, by ``turn``."""
    counts = {(str(h), int(p)): 0 for h, p in candidates}
    for record in records:
        state = state_of(record)
        if (
            state is not None
            and record.dbapi_connection is not None
            and state.host in counts
        ):
            counts[state.host] += 1
    n = len(candidates)
    order = [(turn + i) % n for i in range(n)]
    return min(
        order, key=lambda i: counts[(str(candidates[i][0]), int(candidates[i][1]))]
    )


def mark_host(
    records: list[ConnectionPoolEntry],
    host: Host,
    *,
    suspect: bool = False,
    retire: bool = False,
) -> None:
    """Mark the open connections to ``host`` suspect (pinged before their
    next use) or retiring (closed: the host drains)."""
    for record in records:
        state = state_of(record)
        if state is None or record.dbapi_connection is None or state.host != host:
            continue
        state.suspect = state.suspect or suspect
        state.retire = state.retire or retire


def closed(state: ConnState) -> bool:
    """Its asyncpg connection is closed (whatever the pool has noticed)."""
    return state.driver is not None and bool(state.driver.is_closed())


def close_reason(state: ConnState, now: float) -> str | None:
    """Why an open connection is due for closing (``"drain"``, ``"lost"``,
    ``"lifetime"``: :meth:`Counters.count_closed`), or None."""
    if state.retire:
        return "drain"
    if state.lost or closed(state):
        return "lost"
    if state.deadline is not None and now >= state.deadline:
        return "lifetime"
    return None


def next_due(records: list[ConnectionPoolEntry], now: float) -> float | None:
    """When the next of ``records`` is due for closing (``now`` if one is
    already), or None: ``CockroachPool._next_due``."""
    due = None
    for record in records:
        state = state_of(record)
        if state is None or record.dbapi_connection is None:
            continue
        if record.in_use:
            ahead = state.deadline
            if ahead is not None and ahead > now and (due is None or ahead < due):
                due = ahead
            continue
        if state.retire or state.lost or closed(state):
            return now
        if state.deadline is not None and (due is None or state.deadline < due):
            due = state.deadline
    return due
