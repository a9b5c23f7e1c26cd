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
    before handing it out; one idle longer than ``idle_before_ping_s`` (or
    whose host lost a connection meanwhile) is marked for a ping.
``connect``
    Pings a connection ``_do_get`` marked; a dead one is invalidated and the
    next one taken. Unmarked, the checkout costs an attribute test.
``_return_conn``
    A connection that needs no round trip (not due, no transaction open, and
    no reset needed (:mod:`._statements`), or its reset sent with the closing
    ``ROLLBACK`` or owed to its next first message, :mod:`._reset`) goes
    straight back: nothing is awaited, so no cancellation can interrupt it,
    and no cleanup task is made. Otherwise it closes a connection past its
    deadline (eager expiry), else resets the session, as one bounded cleanup
    (:mod:`sqlalchemy_crdb_async._cleanup`): a cancelled caller waits for it,
    or past the bound the connection is terminated and a WARNING logged; then
    the record goes back and the cancellation is re-raised. A reset that
    fails drops the connection and still returns its record.
``_invalidate``
    SQLAlchemy calls it on any disconnect error to invalidate *every* pooled
    connection; here only connections to the same host are affected: closed
    when the server said it is shutting down (57P01/57P02/57P03), pinged
    before their next use otherwise.
``dispose``
    Stops the maintenance task (awaited: ``AsyncEngine.dispose()`` runs this
    in SQLAlchemy's greenlet), then closes every idle connection as one
    bounded cleanup, so a cancelled dispose still closes them all.
Dialect hooks (:mod:`._listeners`) and the maintenance task (:mod:`._maintenance`)
    Neither module imports this one: the hooks get a callback
    (``_prepare_connect``), the task a :class:`._maintenance.MaintainedPool`.
    The ``connect`` hook orders a multi-host URL's hosts, least-used first,
    and passes asyncpg the shared-introspection connection class
    (:mod:`._type_cache`); ``is_disconnect`` treats the shutdown SQLSTATEs as
    disconnects even while the socket is still open. The task closes idle
    connections past their deadline or to a draining host.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only, greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet
from sqlalchemy.util.queue import Empty
from typing_extensions import override

from .._cleanup import force_close, run_cleanup
from ..sqlstate import is_server_shutdown
from . import _closing, _reset
from ._listeners import CONNECTING, install_dialect_hooks
from ._maintenance import Maintenance, dispose
from ._records import (
    STATE_KEY,
    ConnectionInfo,
    ConnState,
    Counters,
    Host,
    close_reason,
    connection_infos,
    host_of,
    least_used_host,
    mark_host,
    next_due,
    state_of,
)
from ._reset import ResetToken, SessionReset, asyncpg_of, ping
from ._stats import PoolStats, snapshot
from ._type_cache import SharedTypeCache, connection_class
from .settings import POOL_CLASS, PoolSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
    from sqlalchemy.pool.base import _CreatorFnType, _CreatorWRecFnType

__all__ = ["CockroachPool", "ConnectionInfo", "PoolStats"]

log = logging.getLogger(__name__)

# The hot hooks call SQLAlchemy's implementations directly: a super object
# and an MRO search per checkout and return cost more than their own work.
_QUEUE_DO_GET = AsyncAdaptedQueuePool._do_get
_QUEUE_CONNECT = AsyncAdaptedQueuePool.connect
_QUEUE_RETURN_CONN = AsyncAdaptedQueuePool._return_conn


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
        self._counters = Counters()
        self._records: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._session_reset = SessionReset()
        self._type_cache = SharedTypeCache()
        self._connection_classes: dict[type[Any], type[Any]] = {}
        self._host_turn = 0
        self._token: ResetToken | None = None
        #: Checkouts whose ping ``_do_get`` found due and ``connect`` has not
        #: sent yet (``ConnState.ping_wanted`` says which).
        self._pings_wanted = 0
        self._idle_before_ping_s = self._settings.idle_before_ping_s
        self._maintenance = Maintenance(self, self._settings.maintenance_interval_s)
        super().__init__(creator, **kw)
        dialect = kw.get("dialect")
        if dialect is not None and hasattr(dialect, "dispatch"):
            install_dialect_hooks(dialect)

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
            token = CONNECTING.set(self._prepare_connect)
            try:
                dbapi_connection = invoke(rec)
            finally:
                CONNECTING.reset(token)
            self._on_connected(rec, dbapi_connection)
            return dbapi_connection

        return create

    @override
    def _do_get(self) -> ConnectionPoolEntry:
        # Every checkout passes here: it calls as little as it can.
        counters = self._counters
        started = time.monotonic()
        counters.waiting += 1
        try:
            record = _QUEUE_DO_GET(self)
        except exc.TimeoutError:
            counters.timeouts += 1
            raise
        finally:
            counters.waiting -= 1
            now = time.monotonic()
            counters.wait_time_s += now - started
        state: ConnState = record._crdb_state  # type: ignore[attr-defined]
        if record.dbapi_connection is None:
            return record
        deadline = state.deadline
        if (
            state.retire
            or state.lost
            or (deadline is not None and now >= deadline)
            or (
                state.protocol is not None
                and (state.driver._aborted or not state.protocol.is_connected())
            )
        ):
            reason = close_reason(state, now)
            if reason is not None:
                self._counters.count_closed(state, reason)
                # SQLAlchemy reconnects a soft-invalidated record on checkout.
                record.invalidate(soft=True)
        elif state.suspect or self._idle_before_ping_s is not None:
            last_used = state.last_used
            if last_used is None:
                state.suspect = False  # fresh from connect
            elif not state.ping_wanted and (
                state.suspect  # its host just lost a connection
                or now - last_used > self._idle_before_ping_s  # type: ignore[operator]
            ):
                state.ping_wanted = True
                self._pings_wanted += 1
        return record

    @override
    def connect(self) -> PoolProxiedConnection:
        fairy = _QUEUE_CONNECT(self)
        if self._pings_wanted:
            # Some checkout wants a ping: this one? (Its record's state says.)
            state = state_of(fairy)
            if state is not None and state.ping_wanted:
                state.ping_wanted = False
                self._pings_wanted -= 1
                return self._connect_pinging(fairy, state)
        self._counters.checkouts += 1
        return fairy

    def _connect_pinging(
        self, fairy: PoolProxiedConnection, state: ConnState | None
    ) -> PoolProxiedConnection:
        """Ping ``fairy`` (its ping is due), then the next ones until one answers."""
        attempts = self.size() + max(self._max_overflow, 0) + 1
        for attempt in range(attempts):
            if attempt:
                fairy = _QUEUE_CONNECT(self)
                state = state_of(fairy)
                if state is None or not state.ping_wanted:
                    return self._handed_out(fairy, state)
                state.ping_wanted = False
                self._pings_wanted -= 1
            assert state is not None
            self._counters.pings_sent += 1
            try:
                ping(fairy, self._dialect_for_ping(), self._settings.ping_timeout_s)
            except Exception as err:
                self._counters.count_loss(state, drain=is_server_shutdown(err))
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
        # A connection that needs no round trip is settled here (one call:
        # every return passes): not due for closing, no transaction open, and
        # its session either needing no reset (nothing sent since the last
        # one left state behind, :mod:`._statements`), or reset by the
        # closing ``ROLLBACK``, or owing the reset to its next first message
        # (:mod:`._reset`). Nothing is awaited, so nothing a cancellation
        # can interrupt. The common cases come first and call little.
        state: ConnState = record._crdb_state  # type: ignore[attr-defined]
        if state.driver is None or record.dbapi_connection is None:
            return self._return_loudly(record, state)
        driver: Any = state.driver
        resets = state.resets
        if resets and driver.crdb_armed is not None:
            # armed for a closing ROLLBACK that never went out (no transaction
            # on the server): the next borrower's ROLLBACK must not reset
            driver.crdb_armed = None
        now = time.monotonic()
        deadline = state.deadline
        if state.retire or state.lost or (deadline is not None and now >= deadline):
            return self._return_loudly(record, state)
        if resets and driver.crdb_reset_sent:
            # The closing ROLLBACK carried the reset: a round trip just
            # ended on this connection (open, out of transaction).
            driver.crdb_disarm()
            self._counters.resets += 1
        elif resets and driver.crdb_clean and driver.crdb_owed is None:
            # Nothing to undo; a server-closed connection is caught at its
            # next checkout.
            if state.protocol.is_in_transaction():
                return self._return_loudly(record, state)
        elif driver.is_in_transaction() or driver.is_closed():
            return self._return_loudly(record, state)
        elif self._settings.reset_on_return:
            # counted once, when owed: not again by a return that finds it owed
            owes = resets and not driver.crdb_clean and driver.crdb_owed is None
            if not self._session_reset.settle_quietly(driver, self._reset_token()):
                return self._return_loudly(record, state)
            self._counters.resets += owes
        state.last_used = now
        if deadline is not None:
            until = self._maintenance.sleeping_until
            if until is None or deadline < until:
                self._maintenance.note(deadline)
        _QUEUE_RETURN_CONN(self, record)

    def _return_loudly(
        self, record: ConnectionPoolEntry, state: ConnState | None
    ) -> None:
        """The return that needs a round trip, as one bounded cleanup."""
        try:
            if record.dbapi_connection is not None and state is not None:
                self._settle_loudly(record, state)
        except asyncio.CancelledError:
            # The cleanup ran to completion (or closed the connection by
            # force) before the cancellation was re-raised.
            _QUEUE_RETURN_CONN(self, record)
            raise
        except BaseException as err:
            level = logging.WARNING if isinstance(err, Exception) else logging.DEBUG
            log.log(level, "dropping a connection whose return failed: %r", err)
            try:
                record.invalidate(e=err)
            finally:
                _QUEUE_RETURN_CONN(self, record)
            if not isinstance(err, Exception):
                raise
            return
        _QUEUE_RETURN_CONN(self, record)

    @override
    def _invalidate(
        self,
        connection: PoolProxiedConnection,
        exception: BaseException | None = None,
        _checkin: bool = True,
    ) -> None:
        state = state_of(connection)
        host = state.host if state is not None else None
        self._counters.count_loss(state, drain=is_server_shutdown(exception))
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
        # QueuePool.dispose() closes idle connections one by one as it takes
        # them out of the queue: a cancellation midway leaves the rest open.
        try:
            dispose(self, self._maintenance)
        finally:
            self._overflow = 0 - self.size()
            self.logger.info("Pool disposed. %s", self.status())

    # -- public views --------------------------------------------------------

    def stats(self) -> PoolStats:
        """A :class:`PoolStats` snapshot (what :func:`pool_stats` returns)."""
        return snapshot(
            self._counters,
            list(self._records),
            self.size(),
            self._max_overflow,
            self._type_cache.hits,
        )

    def connections(self) -> list[ConnectionInfo]:
        """The open connections: host, age, own lifetime, idle time, in use."""
        return connection_infos(list(self._records), time.monotonic())

    # -- internals -----------------------------------------------------------

    def _on_connected(
        self, record: ConnectionPoolEntry, dbapi_connection: DBAPIConnection
    ) -> None:
        now = time.monotonic()
        settings = self._settings
        lifetime = settings.max_lifetime_s
        if lifetime is not None and settings.lifetime_jitter_fraction:
            lifetime *= 1.0 - settings.lifetime_jitter_fraction * random.random()
        deadline = None if lifetime is None else now + lifetime
        driver = self._dialect.get_driver_connection(dbapi_connection)
        host: Host = None
        if isinstance(driver, asyncpg.Connection):
            host = host_of(driver)
            record_ref = weakref.ref(record)
            driver.add_termination_listener(
                lambda conn: self._on_terminated(record_ref, conn)
            )
        else:
            driver = None
        resets = settings.reset_on_return and isinstance(
            driver, _reset.ResetWithRollback
        )
        state = ConnState(
            host,
            now,
            lifetime,
            deadline,
            driver=driver,
            resets=resets,
            protocol=getattr(driver, "_protocol", None),
        )
        record.info[STATE_KEY] = state
        # Also an attribute for checkout and return (a cached read; ``info``
        # is a descriptor): every record gets it here, when it connects.
        record._crdb_state = state  # type: ignore[attr-defined]
        # Here, not per checkout: a connection is made on the loop it serves.
        self._maintenance.ensure()
        self._records.add(record)
        self._counters.connections_opened += 1

    def _next_due(self) -> float | None:
        """When the maintenance task next has an idle connection to close.

        A checked-out connection's deadline still ahead counts too: the task
        then sleeps until it instead of being woken by every return
        (``Maintenance.note`` wakes only for an earlier deadline), a task
        switch per checkout saved when every connection is in use.
        """
        return next_due(list(self._records), time.monotonic())

    def _on_terminated(
        self, record_ref: weakref.ref[ConnectionPoolEntry], driver: Any
    ) -> None:
        # asyncpg calls this on any close; only an unexpected one (the record
        # still holds this connection) means the server or network dropped it.
        record = record_ref()
        if record is None or record.driver_connection is not driver:
            return
        state = state_of(record)
        if state is not None and not state.lost:
            state.lost = True
            self._counters.count_loss(state, drain=False)
            mark_host(list(self._records), state.host, suspect=True)
            self._maintenance.wake()

    def _handed_out(
        self, fairy: PoolProxiedConnection, state: ConnState | None
    ) -> PoolProxiedConnection:
        if state is not None:
            state.suspect = False
        self._counters.checkouts += 1
        return fairy

    def _dialect_for_ping(self) -> Dialect:
        return self._dialect  # type: ignore[return-value]

    def _is_cockroachdb(self) -> bool:
        return bool(getattr(self._dialect, "is_cockroachdb", False))

    def _reset_token(self) -> ResetToken:
        """``(reset, is_cockroachdb)`` for arming and owing (:mod:`._reset`).

        Known once the dialect has met its server (it has by the time a
        connection comes back), then kept: a pool's server does not change
        flavour.
        """
        token = self._token
        if token is None:
            token = (self._session_reset, self._is_cockroachdb())
            if getattr(self._dialect, "server_info", True) is not None:
                self._token = token
        return token

    def _due_reason(self, record: ConnectionPoolEntry, now: float) -> str | None:
        """Why an open record is due for closing (and count it), or None."""
        state = state_of(record)
        if state is None or record.dbapi_connection is None:
            return None
        reason = close_reason(state, now)
        if reason is not None:
            self._counters.count_closed(state, reason)
        return reason

    def _settle_loudly(self, record: ConnectionPoolEntry, state: ConnState) -> None:
        if not in_greenlet():
            # No event loop to talk to the server from (garbage collection).
            record.invalidate()
            return
        # One cleanup task, bounded, awaited through cancellations (_cleanup).
        ok = await_only(
            run_cleanup(
                greenlet_spawn(self._settle, record, state),
                lambda: force_close(record),
                "returning a connection to the pool",
            )
        )
        if not ok and record.dbapi_connection is not None:
            record.invalidate()

    def _settle(self, record: ConnectionPoolEntry, state: ConnState) -> None:
        """Close a connection that is due, else reset its session."""
        reason = close_reason(state, time.monotonic())
        if reason is not None:
            self._counters.count_closed(state, reason)
            record.close()
            return
        if self._settings.reset_on_return:
            self._session_reset.run(record, self._is_cockroachdb())
            self._counters.resets += 1
        else:
            driver = asyncpg_of(record)
            if driver is not None and driver.is_in_transaction():
                await_only(driver.execute("ROLLBACK"))
        state.last_used = time.monotonic()
        self._maintenance.note(state.deadline)

    def _host_trouble(self, host: Host, error: BaseException | None) -> None:
        if is_server_shutdown(error):
            mark_host(list(self._records), host, retire=True)
            self._maintenance.wake()
        else:
            mark_host(list(self._records), host, suspect=True)

    # -- multi-host and introspection (the connect hook) -----------------------

    def _prepare_connect(self, dialect: Dialect, cparams: dict[str, Any]) -> None:
        hosts, ports = cparams.get("host"), cparams.get("port")
        if isinstance(hosts, list) and isinstance(ports, list) and len(hosts) > 1:
            self._host_turn += 1
            first = least_used_host(
                list(self._records),
                list(zip(hosts, ports, strict=True)),
                self._host_turn,
            )
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

    def _arm_reset(self, fairy: Any) -> Any:
        """Before a closing ``Connection`` rolls back on ``fairy`` (see
        :mod:`._reset`); returns the armed driver connection, or None.

        ``fairy`` is SQLAlchemy's ``_ConnectionFairy``; its record's ``info``
        is read directly (``fairy.info`` is a property made anew per checkout).
        """
        state = fairy._connection_record.info.get(STATE_KEY)
        if state is None or not state.resets or not self._session_reset.combine:
            return None
        driver = state.driver
        if driver.crdb_clean:
            return None  # nothing to undo: a plain ROLLBACK, as stock
        driver.crdb_armed = self._token or self._reset_token()
        driver.crdb_reset_sent = False
        return driver

    def engine_created(self, engine: Engine) -> None:
        """From the dialect's hook: the engine's connections call ``_arm_reset``."""
        if self._settings.reset_on_return:
            engine._connection_cls = _closing.closing_connection_class(
                engine._connection_cls
            )

    # -- background maintenance -----------------------------------------------

    def _take_idle(self) -> list[ConnectionPoolEntry]:
        taken: list[ConnectionPoolEntry] = []
        while True:
            try:
                taken.append(self._pool.get_nowait())
            except Empty:
                return taken

    def _put_back_idle(self, records: list[ConnectionPoolEntry]) -> None:
        # in the order taken: a LIFO queue pops from the end
        queue = self._pool
        for record in reversed(records) if queue.use_lifo else records:
            queue.put_nowait(record)


POOL_CLASS.append(CockroachPool)
