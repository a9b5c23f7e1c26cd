"""What the pool knows of each connection, and its counters (internal).

A :class:`ConnState` lives in each pool record's ``info`` (:func:`state_of`
reads it back); :class:`ConnectionInfo` is its public view
(:meth:`.CockroachPool.connections`); :class:`Counters` holds the numbers
:func:`.pool_stats` reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "STATE_KEY",
    "ConnState",
    "ConnectionInfo",
    "Counters",
    "Host",
    "host_of",
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
