"""``CockroachPool``: SQLAlchemy's asyncio queue pool, tuned for CockroachDB.

Made by :meth:`.settings.PoolSettings.engine_kwargs`; the behaviour is described
in :mod:`.settings`. How it hooks into SQLAlchemy (``sqlalchemy.pool.base``):

``_should_wrap_creator``
    Every new connection (first connect or reconnect of a record) passes
    through here: the pool gives it a jittered deadline, notes its host, and
    registers an asyncpg termination listener that notices a server closing
    the connection while it sits idle.
``_do_get``
    Counts waiters, wait time and timeouts; a record past its deadline, lost,
    or to a draining host is soft-invalidated, so SQLAlchemy reconnects it
    before handing it out.
``connect``
    Pings a connection idle longer than ``idle_before_ping_s`` (or whose host
    lost a connection meanwhile); a dead one is invalidated and the next one
    taken.
``_return_conn``
    Closes a connection past its deadline (eager expiry), else resets the
    session. A failure, or a cancellation, while doing so invalidates the
    connection and still returns its record to the pool.
``_invalidate``
    SQLAlchemy calls it on any disconnect error to invalidate *every* pooled
    connection; here only connections to the same host are affected: closed
    when the server said it is shutting down (57P01/57P02/57P03), pinged
    before their next use otherwise.
Dialect events and a background task (:mod:`._listeners`)
    ``do_connect`` orders a multi-host URL's hosts, least-used first, and
    passes asyncpg the shared-introspection connection class
    (:mod:`._type_cache`); ``handle_error`` treats the shutdown SQLSTATEs as
    disconnects even while the socket is still open. Every
    ``maintenance_interval_s`` a task closes idle connections past their
    deadline or to a draining host; it stops on ``dispose()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.concurrency import in_greenlet
from sqlalchemy.util.queue import Empty
from typing_extensions import override

from ..sqlstate import is_server_shutdown
from . import _reset
from ._listeners import CONNECTING, install_dialect_listeners, maintain
from ._reset import SessionReset, asyncpg_of, ping
from ._stats import PoolStats
from ._type_cache import SharedTypeCache, connection_class
from .settings import POOL_CLASS, PoolSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
    from sqlalchemy.pool.base import _CreatorFnType, _CreatorWRecFnType

__all__ = ["CockroachPool", "ConnectionInfo", "PoolStats", "pool_stats"]

log = logging.getLogger(__name__)

_STATE_KEY = "sqlalchemy_crdb_async.pool"

Host = tuple[str, int] | None


def pool_stats(engine: AsyncEngine | Engine) -> PoolStats:
    """:class:`PoolStats` of an engine made with ``PoolSettings.engine_kwargs()``."""
    pool = engine.pool
    if not isinstance(pool, CockroachPool):
        raise TypeError(
            f"pool_stats() needs an engine whose pool is CockroachPool, got "
            f"{type(pool).__name__}; create it with "
            "create_async_engine(url, **PoolSettings().engine_kwargs())"
        )
    return pool.stats()


@dataclass
class _ConnState:
    """What the pool knows of one open connection (in ``record.info``)."""

    host: Host
    opened: float
    deadline: float | None
    last_used: float | None = None
    suspect: bool = False
    retire: bool = False
    lost: bool = False
    #: How its loss was counted: "lost" or "drain" (several paths can notice
    #: one loss; a shutdown SQLSTATE, seen later, turns "lost" into "drain").
    counted: str | None = None


@dataclass(frozen=True)
class ConnectionInfo:
    """One open connection, as :meth:`CockroachPool.connections` reports it."""

    host: Host
    age_s: float
    lifetime_s: float | None
    idle_s: float | None
    in_use: bool


@dataclass
class _Counters:
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


class CockroachPool(AsyncAdaptedQueuePool):
    """See the module docstring; configure it with :class:`.settings.PoolSettings`."""

    def __init__(
        self,
        creator: _CreatorFnType | _CreatorWRecFnType,
        crdb_pool_settings: PoolSettings | None = None,
        **kw: Any,
    ) -> None:
        # Sizes and timeout come from SQLAlchemy's own arguments (which
        # engine_kwargs() fills in); the settings supply the rest.
        self._settings = crdb_pool_settings or PoolSettings()
        self._counters = _Counters()
        self._records: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._session_reset = SessionReset()
        self._type_cache = SharedTypeCache()
        self._connection_classes: dict[type[Any], type[Any]] = {}
        self._host_turn = 0
        self._maintenance: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        super().__init__(creator, **kw)
        dialect = kw.get("dialect")
        if dialect is not None and hasattr(dialect, "dispatch"):
            install_dialect_listeners(dialect)

    @property
    def settings(self) -> PoolSettings:
        """The :class:`.settings.PoolSettings` this pool runs with."""
        return self._settings

    # -- SQLAlchemy hooks ----------------------------------------------------

    @override
    def _should_wrap_creator(
        self, creator: _CreatorFnType | _CreatorWRecFnType
    ) -> _CreatorWRecFnType:
        invoke = super()._should_wrap_creator(creator)

        def create(rec: ConnectionPoolEntry) -> DBAPIConnection:
            token = CONNECTING.set(self)
            try:
                dbapi_connection = invoke(rec)
            finally:
                CONNECTING.reset(token)
            self._on_connected(rec, dbapi_connection)
            return dbapi_connection

        return create

    @override
    def _do_get(self) -> ConnectionPoolEntry:
        self._ensure_maintenance()
        counters = self._counters
        started = time.monotonic()
        counters.waiting += 1
        try:
            record = super()._do_get()
        except exc.TimeoutError:
            counters.timeouts += 1
            raise
        finally:
            counters.waiting -= 1
            counters.wait_time_s += time.monotonic() - started
        state = _state(record)
        if state is not None and record.dbapi_connection is not None:
            reason = self._close_reason(record, state, time.monotonic())
            if reason is not None:
                self._count_closed(state, reason)
                # SQLAlchemy reconnects a soft-invalidated record on checkout.
                record.invalidate(soft=True)
        return record

    @override
    def connect(self) -> PoolProxiedConnection:
        attempts = self.size() + max(self._max_overflow, 0) + 1
        for _ in range(attempts):
            fairy = super().connect()
            state = _state(fairy)
            if state is None or not self._ping_due(state):
                return self._handed_out(fairy, state)
            self._counters.pings_sent += 1
            try:
                ping(fairy, self._dialect_for_ping(), self._settings.ping_timeout_s)
            except Exception as err:
                self._count_loss(state, drain=is_server_shutdown(err))
                self._host_trouble(state.host, err)
                fairy.invalidate(err)
                continue
            except BaseException as err:
                # Cancelled mid-ping: the connection's state is unknown.
                fairy.invalidate(err)
                raise
            return self._handed_out(fairy, state)
        raise exc.DisconnectionError(
            f"no live connection after {attempts} attempts: every pooled "
            "connection failed its ping"
        )

    @override
    def _return_conn(self, record: ConnectionPoolEntry) -> None:
        try:
            self._before_return(record)
        except BaseException as err:
            level = logging.WARNING if isinstance(err, Exception) else logging.DEBUG
            log.log(level, "dropping a connection whose return failed: %r", err)
            try:
                record.invalidate(e=err)
            finally:
                super()._return_conn(record)
            if not isinstance(err, Exception):
                raise
            return
        super()._return_conn(record)

    @override
    def _invalidate(
        self,
        connection: PoolProxiedConnection,
        exception: BaseException | None = None,
        _checkin: bool = True,
    ) -> None:
        state = _state(connection)
        host = state.host if state is not None else None
        self._count_loss(state, drain=is_server_shutdown(exception))
        self._host_trouble(host, exception)
        if _checkin and getattr(connection, "is_valid", False):
            connection.invalidate(exception)

    @override
    def recreate(self) -> CockroachPool:
        self.logger.info("Pool recreating")
        return self.__class__(
            self._creator,
            crdb_pool_settings=self._settings,
            pool_size=self._pool.maxsize,
            max_overflow=self._max_overflow,
            pre_ping=self._pre_ping,
            use_lifo=self._pool.use_lifo,
            timeout=self._timeout,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    @override
    def dispose(self) -> None:
        task, self._maintenance = self._maintenance, None
        if task is not None and not task.done():
            # the task's event loop may be closed already (then it never runs)
            with contextlib.suppress(RuntimeError):
                task.cancel()
        super().dispose()

    # -- public views --------------------------------------------------------

    def stats(self) -> PoolStats:
        """A :class:`PoolStats` snapshot (what :func:`pool_stats` returns)."""
        c = self._counters
        open_records = [
            r for r in list(self._records) if r.dbapi_connection is not None
        ]
        checked_out = sum(1 for r in list(self._records) if r.in_use)
        idle = sum(1 for r in open_records if not r.in_use)
        size, overflow = self.size(), self._max_overflow
        return PoolStats(
            pool_size=size,
            pool_max=size + overflow if overflow >= 0 else -1,
            connections=len(open_records),
            checked_out=checked_out,
            idle=idle,
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
            types_shared=self._type_cache.hits,
        )

    def connections(self) -> list[ConnectionInfo]:
        """The open connections: host, age, own lifetime, idle time, in use."""
        now = time.monotonic()
        out = []
        for record in list(self._records):
            state = _state(record)
            if state is None or record.dbapi_connection is None:
                continue
            lifetime = None if state.deadline is None else state.deadline - state.opened
            idle = None
            if state.last_used is not None and not record.in_use:
                idle = now - state.last_used
            out.append(
                ConnectionInfo(
                    host=state.host,
                    age_s=now - state.opened,
                    lifetime_s=lifetime,
                    idle_s=idle,
                    in_use=record.in_use,
                )
            )
        return out

    # -- internals -----------------------------------------------------------

    def _on_connected(
        self, record: ConnectionPoolEntry, dbapi_connection: DBAPIConnection
    ) -> None:
        now = time.monotonic()
        settings = self._settings
        deadline = None
        if settings.max_lifetime_s is not None:
            shortened = settings.lifetime_jitter_fraction * random.random()
            deadline = now + settings.max_lifetime_s * (1.0 - shortened)
        driver = self._dialect.get_driver_connection(dbapi_connection)
        host: Host = None
        if isinstance(driver, asyncpg.Connection):
            host = _host_of(driver)
            record_ref = weakref.ref(record)
            driver.add_termination_listener(
                lambda conn: self._on_terminated(record_ref, conn)
            )
        record.info[_STATE_KEY] = _ConnState(host=host, opened=now, deadline=deadline)
        self._records.add(record)
        self._counters.connections_opened += 1

    def _on_terminated(
        self, record_ref: weakref.ref[ConnectionPoolEntry], driver: Any
    ) -> None:
        # asyncpg calls this on any close; only an unexpected one (the record
        # still holds this connection) means the server or network dropped it.
        record = record_ref()
        if record is None or record.driver_connection is not driver:
            return
        state = _state(record)
        if state is not None and not state.lost:
            state.lost = True
            self._count_loss(state, drain=False)
            self._mark_host(state.host, suspect=True)
            self._wake_maintenance()

    def _handed_out(
        self, fairy: PoolProxiedConnection, state: _ConnState | None
    ) -> PoolProxiedConnection:
        if state is not None:
            state.suspect = False
        self._counters.checkouts += 1
        return fairy

    def _ping_due(self, state: _ConnState) -> bool:
        if state.last_used is None:
            return False  # fresh from connect
        if state.suspect:
            return True  # its host just lost a connection
        threshold = self._settings.idle_before_ping_s
        return threshold is not None and time.monotonic() - state.last_used > threshold

    def _dialect_for_ping(self) -> Dialect:
        return self._dialect  # type: ignore[return-value]

    def _is_cockroachdb(self) -> bool:
        return bool(getattr(self._dialect, "is_cockroachdb", False))

    def _close_reason(
        self, record: ConnectionPoolEntry, state: _ConnState, now: float
    ) -> str | None:
        if state.retire:
            return "drain"
        if state.lost or _driver_closed(record):
            return "lost"
        if state.deadline is not None and now >= state.deadline:
            return "lifetime"
        return None

    def _count_closed(self, state: _ConnState, reason: str) -> None:
        if reason == "lifetime":
            self._counters.recycled_by_lifetime += 1
        else:
            self._count_loss(state, drain=reason == "drain")

    def _count_loss(self, state: _ConnState | None, *, drain: bool) -> None:
        c = self._counters
        if state is not None:
            if state.counted == "drain" or (state.counted == "lost" and not drain):
                return
            if state.counted == "lost":
                c.connections_lost -= 1
            state.counted = "drain" if drain else "lost"
        if drain:
            c.invalidated_by_drain += 1
        else:
            c.connections_lost += 1

    def _before_return(self, record: ConnectionPoolEntry) -> None:
        state = _state(record)
        if record.dbapi_connection is None or state is None:
            return
        if not in_greenlet():
            # No event loop to talk to the server from (garbage collection).
            record.invalidate()
            return
        reason = self._close_reason(record, state, time.monotonic())
        if reason is not None:
            self._count_closed(state, reason)
            record.close()
            return
        if self._settings.reset_on_return:
            self._session_reset.run(record, self._is_cockroachdb())
            self._counters.resets += 1
        else:
            driver = asyncpg_of(record)
            if driver is not None and driver.is_in_transaction():
                from sqlalchemy.util import await_only

                await_only(driver.execute("ROLLBACK"))
        state.last_used = time.monotonic()

    def _host_trouble(self, host: Host, error: BaseException | None) -> None:
        if is_server_shutdown(error):
            self._mark_host(host, retire=True)
            self._wake_maintenance()
        else:
            self._mark_host(host, suspect=True)

    def _mark_host(
        self, host: Host, *, suspect: bool = False, retire: bool = False
    ) -> None:
        for record in list(self._records):
            state = _state(record)
            if state is None or record.dbapi_connection is None or state.host != host:
                continue
            state.suspect = state.suspect or suspect
            state.retire = state.retire or retire

    # -- multi-host and introspection (do_connect) ----------------------------

    def _prepare_connect(self, dialect: Dialect, cparams: dict[str, Any]) -> None:
        hosts, ports = cparams.get("host"), cparams.get("port")
        if isinstance(hosts, list) and isinstance(ports, list) and len(hosts) > 1:
            first = self._least_used_host(list(zip(hosts, ports, strict=True)))
            cparams["host"] = hosts[first:] + hosts[:first]
            cparams["port"] = ports[first:] + ports[:first]
        settings = self._settings
        share, reset = settings.share_type_introspection, settings.reset_on_return
        if (share or reset) and dialect.driver == "asyncpg":
            base = cparams.get("connection_class", asyncpg.Connection)
            cls = self._connection_classes.get(base)
            if cls is None:
                cls = _reset.reset_with_rollback_class(base) if reset else base
                cls = connection_class(self._type_cache, cls) if share else cls
                self._connection_classes[base] = cls
            cparams["connection_class"] = cls

    def _arm_reset(self, fairy: PoolProxiedConnection) -> Any:
        """Before a closing ``Connection`` rolls back (see :mod:`._reset`)."""
        if not self._settings.reset_on_return:
            return None
        return self._session_reset.arm(fairy, self._is_cockroachdb())

    def engine_created(self, engine: Engine) -> None:
        """From the dialect's hook: the engine's connections call ``_arm_reset``."""
        if self._settings.reset_on_return:
            engine._connection_cls = _reset.closing_connection_class(
                engine._connection_cls
            )

    def _least_used_host(self, candidates: list[tuple[Any, Any]]) -> int:
        counts = {(str(h), int(p)): 0 for h, p in candidates}
        for record in list(self._records):
            state = _state(record)
            if (
                state is not None
                and record.dbapi_connection is not None
                and state.host in counts
            ):
                counts[state.host] += 1
        self._host_turn += 1
        n = len(candidates)
        order = [(self._host_turn + i) % n for i in range(n)]
        return min(
            order, key=lambda i: counts[(str(candidates[i][0]), int(candidates[i][1]))]
        )

    # -- background maintenance -----------------------------------------------

    def _ensure_maintenance(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._maintenance
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._wake = asyncio.Event()
        self._maintenance = loop.create_task(
            maintain(
                weakref.ref(self), self._settings.maintenance_interval_s, self._wake
            ),
            name=f"sqlalchemy_crdb_async pool maintenance {id(self):#x}",
        )

    def _wake_maintenance(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _close_idle_due(self) -> None:
        """Take idle connections due for closing out of the queue and close them."""
        now = time.monotonic()
        queue = self._pool
        taken: list[ConnectionPoolEntry] = []
        while True:
            try:
                taken.append(queue.get_nowait())
            except Empty:
                break
        due: list[tuple[ConnectionPoolEntry, _ConnState, str]] = []
        keep: list[ConnectionPoolEntry] = []
        for record in taken:
            state = _state(record)
            reason = None
            if state is not None and record.dbapi_connection is not None:
                reason = self._close_reason(record, state, now)
            if state is None or reason is None:
                keep.append(record)
            else:
                due.append((record, state, reason))
        # put back in the order they came out (a LIFO queue pops from the end)
        for record in reversed(keep) if queue.use_lifo else keep:
            queue.put_nowait(record)
        for record, state, reason in due:
            try:
                self._count_closed(state, reason)
                record.close()
            except Exception:
                log.exception("closing an idle connection failed")
            finally:
                super()._do_return_conn(record)


POOL_CLASS.append(CockroachPool)


def _state(entry: Any) -> _ConnState | None:
    info = getattr(entry, "info", None)
    if info is None:
        return None
    state = info.get(_STATE_KEY)
    return state if isinstance(state, _ConnState) else None


def _driver_closed(record: ConnectionPoolEntry) -> bool:
    driver = asyncpg_of(record)
    return driver is not None and bool(driver.is_closed())


def _host_of(driver: Any) -> Host:
    addr = getattr(driver, "_addr", None)  # asyncpg: the (host, port) it connected to
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return None
