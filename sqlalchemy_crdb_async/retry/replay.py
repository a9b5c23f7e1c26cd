"""``retrying_session``: run a body once; replay its statements on a retry.

::

    async with retrying_session(Session) as session:    # Session: async_sessionmaker
        acct = await session.get(Account, 1)
        acct.balance -= 10
    # committed here; a 40001 at any statement or at COMMIT was handled invisibly

How it works
------------
While the block runs, every statement the session executes on its connection
is recorded with a fingerprint (a BLAKE2b hash of the column names, the row
count and every row of its full result). The hook is SQLAlchemy's
``do_execute`` / ``do_executemany`` / ``do_execute_no_params`` dialect events,
installed once per engine; which session is recorded is kept in a
``contextvars.ContextVar``, and only statements on that session's own DBAPI
connection are recorded.

When a statement, or the COMMIT on leaving the block, fails with a retryable
error (40001, 40P01, a cached-plan 0A000; see :mod:`.classify`):

1. the transaction is rolled back: on CockroachDB with
   ``ROLLBACK TO SAVEPOINT cockroach_restart`` (the transaction began with
   ``SAVEPOINT cockroach_restart`` and commits with ``RELEASE SAVEPOINT
   cockroach_restart`` then ``COMMIT``, which keeps its place in line;
   https://www.cockroachlabs.com/docs/stable/advanced-client-side-transaction-retries
   and tests/crdb_facts/session_vars.md section 3); on PostgreSQL with a full
   ROLLBACK,
   the next statement BEGINs a new transaction;
2. the helper sleeps (``asyncio.sleep``, per the :class:`.RetryPolicy`), after
   the rollback: on PostgreSQL no transaction is open meanwhile; on CockroachDB
   the transaction stays open, its writes discarded, so it keeps its priority;
3. the log is replayed on the same connection, comparing fingerprints. All
   equal: the failed statement runs again and returns its result to the body as
   if nothing happened (or the COMMIT is sent again). One differs:
   :class:`.ReplayMismatchError` is raised: the body saw data that has since
   changed. It is retryable, so an enclosing :func:`.run_transaction` re-runs
   the body. Example::

       async def transfer(_: AsyncSession) -> None:  # the outer session is unused
           async with retrying_session(Session) as session:
               acct = await session.get(Account, 1)
               acct.balance -= 10

       await run_transaction(Session, transfer)  # re-runs it on a mismatch

Lock on read
------------
A read-modify-write body (read balances, write new ones) under contention
would mostly end in ReplayMismatchError: by the time the conflict surfaces,
at a write or at COMMIT, other transactions have changed what the body read.
So by default (``lock_on_read=True``) the session's plain ``select()``
statements get ``FOR UPDATE OF <their tables>``, which CockroachDB recommends
for read-modify-write (https://www.cockroachlabs.com/docs/stable/select-for-update):
the rows the body reads are locked until the transaction ends, a competing
writer waits, and a conflict surfaces *at the read*, before the body has seen
anything, where the replay (of the statements before it) still matches.
"Plain" means: every FROM a table, every column a table column, no GROUP BY,
HAVING or DISTINCT, no locking clause already (:func:`._lock_on_read.lockable_tables`);
``text()`` statements, aggregates and joins are left alone. ``session.get()``,
``session.execute(select(...))`` and lazy loads qualify. A read-only body does
not need the locks: pass ``lock_on_read=False``; read-only transactions are
left alone anyway (:mod:`._lock_on_read`). Do not make the block await another
connection that writes a row the session read: it waits for the session's
lock, a self-wait no server detects; the deadline ends it with a
:class:`.DeadlineExceededError` that says so.

Measured (``python -m benchmarks --workload bank --api retrying_session``,
48 tasks, 100 accounts, embedded PostgreSQL; benchmarks/README.md): without
the lock 6.6% of transfers raised ReplayMismatchError; with it, none of
1,575 did. On 10 hot rows 4-9% still raise with the lock (next list).

When ReplayMismatchError still reaches the caller:

- a conflict after the body read rows *without* a lock (``text()``,
  aggregates, joins, ``lock_on_read=False``) that another transaction changed;
- on PostgreSQL, a conflict that surfaces after a locked read (at a later
  statement or at COMMIT: SSI's predicate locks on a sequential scan see
  conflicts beyond the locked rows): the rollback releases the locks, and a
  writer that changes those rows during the backoff makes the replay differ;
- on CockroachDB, a locking read does not rule out every 40001 ("using SELECT
  FOR UPDATE does not completely eliminate the chance of serialization
  errors ... due to time uncertainty",
  https://www.cockroachlabs.com/docs/v22.1/select-for-update); the
  transaction stays open across the retry (``ROLLBACK TO SAVEPOINT
  cockroach_restart``) and keeps its priority, but a replayed read can still
  see a newer value. Not measured here: no CockroachDB server in this
  project's test runs.

It is retryable: ``run_transaction(Session, body)`` around the block re-runs
the body (it runs inside the outer attempt's admission slot, see below).

Admission
---------
The session takes a slot of the engine's admission gate (:mod:`._admission`)
before it opens its connection and holds it until the block ends, replays
included; each replayed conflict lowers the limit. ``RetryPolicy(
admission=False)`` skips the gate. Inside another retry helper on the same
engine it passes straight through.

ORM state across a replay
-------------------------
The body's session and identity map are kept as they are. That is sound
because a replay only carries on when every result is identical to what the
body already saw, so every loaded object, every pending change and every
decision the body took still hold; when anything differs the session is
rolled back and closed with the error, never reused.

Caveats
-------
- Results must be buffered: ``stream_results``/server-side cursors cannot be
  fingerprinted and raise ``InvalidRequestError``.
- Non-deterministic results never match: server-generated keys (SERIAL
  sequences, ``unique_rowid()``), ``now()``, ``random()``,
  ``gen_random_uuid()`` in a RETURNING or SELECT. Every replay then ends in
  ReplayMismatchError. Generate such values on the client (``uuid.uuid4()``)
  or use :func:`.run_transaction`.
- A lost connection, or CockroachDB's transient 58C00 / 58C01 (which may end
  the transaction under the savepoint), cannot be replayed from inside the
  session (the session holds that connection): the error propagates (before
  COMMIT; retryable by an enclosing ``run_transaction``) or becomes
  :class:`.AmbiguousCommitError` (at COMMIT, unless ``idempotent=True``, when
  the original error propagates for an enclosing helper to retry).
- Do not call ``session.commit()`` or ``rollback()`` inside the block; leaving
  the block commits, an exception rolls back.
- A replay re-executes writes too: statements are re-sent exactly as recorded,
  so the replayed transaction does the same work in the same order.
- Cancellation propagates once the session is rolled back and closed: that
  exit sequence runs as one cleanup task, awaited through repeated
  cancellation up to a bound, then the connection is terminated
  (:mod:`sqlalchemy_crdb_async._cleanup`).

See also: :mod:`.retry` (``run_transaction``, ``retrying``); Cockroach Labs'
JDBC wrapper (https://github.com/cockroachlabs-field/cockroachdb-jdbc), which replays
with result checksums the same way.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.util import await_only

from .._cleanup import run_cleanup, terminator
from ..errors import ReplayMismatchError
from ._context import SessionContext
from ._fingerprint import fingerprint, short_sql
from ._lock_on_read import can_lock, check_lock_on_read, lock_reads, makes_read_only
from ._loop import (
    AttemptLoop,
    inject_statement,
    mark_injected,
    replay_deadline_error,
)
from ._scopes import sessionmaker_of, sync_engine_of
from .classify import ErrorKind, classify

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from sqlalchemy.engine import Connection, Dialect, Engine
    from sqlalchemy.engine.interfaces import (
        DBAPIConnection,
        DBAPICursor,
        ExecutionContext,
    )
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    from sqlalchemy.orm import ORMExecuteState

    from .policy import RetryPolicy

__all__ = ["retrying_session"]

# The client-side retry protocol: tests/crdb_facts/session_vars.md section 3 (from
# https://github.com/cockroachdb/cockroach/blob/master/pkg/sql/logictest/testdata/logic_test/manual_retry).
SAVEPOINT = "SAVEPOINT cockroach_restart"
ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT cockroach_restart"
RELEASE_SAVEPOINT = "RELEASE SAVEPOINT cockroach_restart"

_Kind = Literal["one", "many", "none"]


@dataclass(frozen=True)
class _Entry:
    kind: _Kind
    statement: str
    parameters: Any
    fingerprint: str


class _Recorder:
    """The statement log of one retrying_session and its recovery procedure."""

    def __init__(self, loop: AttemptLoop, dialect: Dialect) -> None:
        self.loop = loop
        self.dialect = dialect
        # CockroachDB: the cockroach_restart protocol (see SAVEPOINT above).
        self.savepoint = bool(getattr(dialect, "is_cockroachdb", False))
        self.log: list[_Entry] = []
        self.dbapi_conn: DBAPIConnection | None = None
        #: The statement in flight (None between statements): where a
        #: cancellation found the session (a BaseException leaves it set).
        self.running: str | None = None
        #: Reads lock_on_read made FOR UPDATE (their rows are locked).
        self.locked_reads = 0
        #: A statement made the transaction read-only: no more FOR UPDATE.
        self.read_only = False

    def lock_reads(self, state: ORMExecuteState) -> None:
        """The session's ``do_orm_execute`` hook (lock on read, counted)."""
        if lock_reads(state, read_only=self.read_only):
            self.locked_reads += 1

    def owns(self, context: ExecutionContext) -> bool:
        mine = self.dbapi_conn
        if mine is None:
            return False
        root: Connection = context.root_connection
        return root.connection.dbapi_connection is mine

    # -- statements ---------------------------------------------------------

    def execute(
        self,
        kind: _Kind,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext,
    ) -> None:
        while True:
            try:
                self.running = statement
                if kind == "many":
                    self.dialect.do_executemany(cursor, statement, parameters, context)
                elif kind == "none":
                    self.dialect.do_execute_no_params(cursor, statement, context)
                else:
                    self.dialect.do_execute(cursor, statement, parameters, context)
                print_ = fingerprint(cursor)
                self.running = None
            except Exception as error:
                self.running = None
                self.recover(error, cursor, commit_sent=False)
                self._stamp(cursor)
                continue
            if kind == "many":
                parameters = list(parameters)
            if makes_read_only(statement):
                self.read_only = True
            self.log.append(_Entry(kind, statement, parameters, print_))
            return

    def commit(self, sync_conn: Connection) -> None:
        """COMMIT (after RELEASE SAVEPOINT on CockroachDB), replaying on retry."""
        while True:
            conn = self.dbapi_conn
            assert conn is not None
            try:
                self.running = "COMMIT"
                if self.savepoint:
                    self._run(conn, RELEASE_SAVEPOINT)
                conn.commit()
                self.running = None
                return
            except Exception as error:
                self.running = None
                try:
                    self.recover(error, None, commit_sent=True)
                except self.dialect.loaded_dbapi.Error as raw:
                    # Raised by our direct DBAPI calls: wrap as SQLAlchemy would.
                    raise sa_exc.DBAPIError.instance(
                        "COMMIT",
                        None,
                        raw,
                        self.dialect.loaded_dbapi.Error,
                        hide_parameters=False,
                        connection_invalidated=self._disconnect(raw, None),
                        dialect=self.dialect,
                    ) from raw

    # -- recovery -----------------------------------------------------------

    def _disconnect(self, error: Exception, cursor: DBAPICursor | None) -> bool:
        try:
            return bool(
                self.dialect.is_disconnect(error, self.dbapi_conn, cursor)  # type: ignore[arg-type]
            )
        except Exception:  # pragma: no cover - defensive: a dialect quirk
            return False

    def recover(
        self, error: Exception, cursor: DBAPICursor | None, *, commit_sent: bool
    ) -> None:
        """Roll back, back off and replay the log; raise when that cannot be."""
        while True:
            disconnect = self._disconnect(error, cursor)
            verdict = classify(error, commit_sent=commit_sent, disconnect=disconnect)
            lost = verdict.connection_lost or verdict.transient  # see Caveats
            if lost or verdict.kind is ErrorKind.AMBIGUOUS:
                if verdict.kind is ErrorKind.AMBIGUOUS and not self.loop.idempotent:
                    self.loop.next_sleep(error, commit_sent=True, disconnect=disconnect)
                # The session holds this connection: no replay elsewhere.
                raise error
            decision = self.loop.next_sleep(
                error, commit_sent=commit_sent, disconnect=disconnect, replay=True
            )
            if decision is None:
                raise error
            if self.loop.slot is not None:
                self.loop.slot.conflicted()
            sleep_s, verdict = decision
            if verdict.kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR:
                self.loop.clear_statement_cache()
            self._rollback()
            await_only(asyncio.sleep(sleep_s))
            self.loop.start()
            try:
                self._replay(error)
            except ReplayMismatchError:
                raise
            except Exception as again:
                error, cursor, commit_sent = again, None, False
                continue
            self.loop.counters.add("replays")
            return

    def _rollback(self) -> None:
        conn = self.dbapi_conn
        assert conn is not None
        if self.savepoint:
            self._run(conn, ROLLBACK_TO_SAVEPOINT)
        else:
            conn.rollback()

    def _stamp(self, cursor: DBAPICursor) -> None:
        # SQLAlchemy's asyncpg cursors carry the schema-cache timestamp that
        # decides whether prepared statements are stale (set in pre_exec).
        if hasattr(cursor, "_invalidate_schema_cache_asof"):
            cursor._invalidate_schema_cache_asof = getattr(  # type: ignore[attr-defined]
                self.dialect, "_invalidate_schema_cache_asof", 0
            )

    def _run(
        self,
        conn: DBAPIConnection,
        statement: str,
        parameters: Any = None,
        kind: _Kind = "none",
    ) -> str:
        cursor = conn.cursor()
        try:
            self._stamp(cursor)
            if kind == "many":
                cursor.executemany(statement, parameters)
            elif kind == "one":
                cursor.execute(statement, parameters)
            else:
                cursor.execute(statement)
            return fingerprint(cursor)
        finally:
            cursor.close()

    def _replay(self, cause: Exception) -> None:
        conn = self.dbapi_conn
        assert conn is not None
        for index, entry in enumerate(self.log, 1):
            got = self._run(conn, entry.statement, entry.parameters, entry.kind)
            if got != entry.fingerprint:
                self.loop.counters.add("replay_mismatches")
                raise ReplayMismatchError(
                    f"retrying_session(): after a retryable error, replaying "
                    f"statement {index} of {len(self.log)} gave a different result "
                    "than the first run: the body acted on data that has since "
                    "changed. Run the body again (run_transaction() around it "
                    f"does). Statement: {short_sql(entry.statement)}",
                    cause,
                ) from cause


_active: ContextVar[_Recorder | None] = ContextVar(
    "sqlalchemy_crdb_async.replay", default=None
)


def _on_execute(
    cursor: DBAPICursor, statement: str, parameters: Any, context: ExecutionContext
) -> bool:
    recorder = _active.get()
    if recorder is None or not recorder.owns(context):
        return False
    recorder.execute("one", cursor, statement, parameters, context)
    return True


def _on_executemany(
    cursor: DBAPICursor,
    statement: str,
    parameters: Sequence[Any],
    context: ExecutionContext,
) -> bool:
    recorder = _active.get()
    if recorder is None or not recorder.owns(context):
        return False
    recorder.execute("many", cursor, statement, parameters, context)
    return True


def _on_execute_no_params(
    cursor: DBAPICursor, statement: str, context: ExecutionContext
) -> bool:
    recorder = _active.get()
    if recorder is None or not recorder.owns(context):
        return False
    recorder.execute("none", cursor, statement, None, context)
    return True


def _install(engine: Engine) -> None:
    # Marked on the dialect, not asked of event.contains(), whose registry
    # keys a target by id(): a dialect at a dead one's address could look
    # installed and get no listener (tests/retry/test_replay.py).
    dialect = engine.dialect
    if vars(dialect).get("_crdb_replay_listeners"):
        return
    event.listen(engine, "do_execute", _on_execute)
    event.listen(engine, "do_executemany", _on_executemany)
    event.listen(engine, "do_execute_no_params", _on_execute_no_params)
    dialect._crdb_replay_listeners = True  # type: ignore[attr-defined]


def retrying_session(
    target: async_sessionmaker[Any] | AsyncEngine,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    lock_on_read: bool = True,
) -> AbstractAsyncContextManager[AsyncSession]:
    """``async with`` an AsyncSession whose transaction survives retries by replay.

    Accepts: ``target``, an ``async_sessionmaker`` or an ``AsyncEngine`` (a
    sessionmaker is made for it); ``policy`` (:class:`.RetryPolicy`, default
    ``RetryPolicy()``) bounds the retries and the backoff; ``idempotent=True``
    lets a connection lost at COMMIT propagate for an enclosing helper to retry
    instead of raising :class:`.AmbiguousCommitError`; ``lock_on_read`` (default
    True) adds ``FOR UPDATE`` to the session's plain ``select()`` statements on
    CockroachDB, so a conflict surfaces before the block has seen stale data
    (see "Lock on read" in the module docstring).

    The block runs once; leaving it without error commits (do not call
    ``session.commit()`` or ``rollback()`` inside); an exception rolls back and
    propagates. Results must be buffered (no ``stream_results``).

    Retries, invisibly to the block: SQLSTATE 40001 and 40P01 and a cached-plan
    0A000 at any statement or at COMMIT. The transaction is rolled back (to
    ``SAVEPOINT cockroach_restart`` on CockroachDB), the helper sleeps, and the
    statements run so far are replayed; when every replayed result equals what
    the block saw, the block carries on as if nothing happened.

    Bounded: ``RetryPolicy.deadline_s`` covers the ``async with`` from entry
    to exit: admission, BEGIN, the block (its statements and its own awaits),
    replays, backoffs, COMMIT and the cleanup. At the deadline the block is
    cancelled wherever it awaits, a running statement is cancelled on the
    server, and the transaction is rolled back. The error says where the
    block was: in a statement, or awaiting something else while holding
    lock_on_read's row locks (a self-wait; see "Lock on read").

    Raises: :class:`.ReplayMismatchError` when a replayed result differs (it is
    retryable: wrap the block in :func:`.run_transaction` to run it again, as
    the module docstring shows); :class:`.RetriesExhaustedError` when the
    policy's attempts run out, :class:`.DeadlineExceededError` when its
    deadline does; :class:`.AmbiguousCommitError` when the connection is lost
    at COMMIT (unless ``idempotent=True``); a connection lost before COMMIT,
    every other error and cancellation propagate unchanged;
    ``sqlalchemy.exc.ArgumentError`` for another kind of target;
    ``InvalidRequestError`` for a streamed result; ``TypeError`` for
    ``async for`` over it (write ``async with``).

    Example::

        from sqlalchemy_crdb_async import retrying_session

        async with retrying_session(Session) as session:  # Session: async_sessionmaker
            acct = await session.get(Account, 1)
            acct.balance -= 10
        # committed here
    """
    return SessionContext(
        _replaying_session(
            target, policy=policy, idempotent=idempotent, lock_on_read=lock_on_read
        )
    )


@asynccontextmanager
async def _replaying_session(
    target: async_sessionmaker[Any] | AsyncEngine,
    *,
    policy: RetryPolicy | None = None,
    idempotent: bool = False,
    lock_on_read: bool = True,
) -> AsyncIterator[AsyncSession]:
    maker = sessionmaker_of(target, "retrying_session")
    check_lock_on_read(lock_on_read)
    engine = sync_engine_of(maker, "retrying_session")
    _install(engine)
    loop = AttemptLoop(policy, engine, idempotent=idempotent, api="retrying_session")
    loop.start()
    recorder = _Recorder(loop, engine.dialect)
    timer = loop.timer
    timer.arm()  # the deadline cancels the block from here (._deadline)
    try:
        async with _session_for(maker, loop, recorder, lock_on_read) as session:
            yield session
    except asyncio.CancelledError:
        if timer.disarm():
            raise replay_deadline_error(
                loop, recorder.running, recorder.locked_reads
            ) from None
        raise
    finally:
        timer.disarm()


@asynccontextmanager
async def _session_for(
    maker: async_sessionmaker[Any],
    loop: AttemptLoop,
    recorder: _Recorder,
    lock_on_read: bool,
) -> AsyncIterator[AsyncSession]:
    """The session of one retrying_session block: admission, BEGIN, commit."""
    engine = loop.engine
    assert engine is not None
    await loop.admit()
    outcome: BaseException | None = None
    try:
        session: AsyncSession = maker()
    except BaseException as error:
        loop.release(error)
        raise
    if lock_on_read and can_lock(engine.dialect):
        event.listen(session.sync_session, "do_orm_execute", recorder.lock_reads)
    token = _active.set(recorder)
    failed = False
    try:
        conn = await session.connection()
        recorder.savepoint = bool(getattr(engine.dialect, "is_cockroachdb", False))
        if recorder.savepoint:
            await conn.exec_driver_sql(SAVEPOINT)
        inject = inject_statement(loop)
        if inject is not None:
            # the pool switches it off on return, however the block ends
            mark_injected(conn.sync_connection, loop.inject_now)  # type: ignore[arg-type]
            await conn.exec_driver_sql(inject)
        recorder.dbapi_conn = (await conn.get_raw_connection()).dbapi_connection
        yield session
        await session.flush()
        await conn.run_sync(recorder.commit)
        recorder.dbapi_conn = None
        # The DBAPI transaction is committed; this settles the ORM's state.
        await session.commit()
        loop.committed()
    except BaseException as error:
        outcome = error
        recorder.dbapi_conn = None
        failed = True
        raise
    finally:
        _active.reset(token)
        # inject_retry_errors_enabled is switched off by the pool's reset
        # listener when the connection goes back (_loop.mark_injected).
        try:
            await run_cleanup(
                _finish(session, rollback=failed),
                terminator(session),
                "retrying_session(): rollback and close",
                timeout_s=loop.cleanup_bound_s(),
            )
        finally:
            loop.release(outcome)


async def _finish(session: AsyncSession, *, rollback: bool) -> None:
    """The session's whole exit sequence, run as one cleanup task."""
    try:
        if rollback:
            await session.rollback()
    finally:
        await session.close()
