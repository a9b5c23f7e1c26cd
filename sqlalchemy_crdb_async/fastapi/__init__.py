"""FastAPI integration: the route owns the transaction and re-runs the endpoint.

FastAPI is an optional extra: ``pip install 'sqlalchemy-crdb-async[fastapi]'``.
Importing this module without FastAPI raises ``ImportError`` naming the extra.

::

    from fastapi import APIRouter, Depends
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from sqlalchemy_crdb_async.fastapi import RetryingRoute, session_dependency

    Session = async_sessionmaker(engine, expire_on_commit=False)
    get_session = session_dependency(Session)
    read_session = session_dependency(Session, read_only=True)

    router = APIRouter(route_class=RetryingRoute)

    @router.post("/transfers")
    async def transfer(t: TransferIn, session: AsyncSession = Depends(get_session)):
        src = await session.get(Account, t.from_id)     # no commit here: the
        src.balance -= t.amount                         # route commits
        return {"from_balance": src.balance}

    app.include_router(router)

What a :class:`RetryingRoute` does with each request
----------------------------------------------------
1. reads the request body once (Starlette keeps it on the ``Request``; every
   attempt parses the same bytes);
2. runs an *attempt*: the dependencies, the endpoint and the building of the
   response (serialization happens inside the transaction, so ORM attributes
   can still load); function-scoped ``yield`` dependencies are closed at the
   end of each attempt, as FastAPI closes them after the endpoint;
3. flushes and COMMITs the request's session(s), and only then hands the
   response to Starlette: nothing is sent before COMMIT succeeded, so a
   transaction that did not commit never answers 2xx;
4. on a retryable error anywhere in 2-3 (40001/40P01 at any statement or at
   COMMIT, :class:`.ReplayMismatchError` from a ``retrying_session`` inside the
   endpoint, a connection lost before COMMIT was sent; see
   :mod:`sqlalchemy_crdb_async.retry.classify`), rolls back, closes the
   sessions, sleeps the policy's backoff, and runs the attempt again,
   dependencies included. Attempts, backoff, deadline and the counters of
   :func:`.retry_stats` are the library's (:class:`.RetryPolicy`, the same
   attempt loop as :func:`.run_transaction`).
   A connect that fails is the exception: it is not retried inside the
   request (the client gets 503 with ``Retry-After`` after one connect, not
   after the policy's attempts; the next request connects again).

The deadline: ``RetryPolicy.deadline_s`` bounds each request, wall-clock from
the route's entry to its answer (attempts, backoff, rollback); an attempt
running when it passes is cancelled (the retry helpers' deadline timer, which
leaves the driver time to send its cancel request to the server): its statement
is cancelled on the server, its transaction rolled back within the time left
plus 0.5 s, and the answer is 503.
A ``ReplayMismatchError`` from a ``retrying_session`` the endpoint runs itself
re-runs the endpoint too, even when it opened no route session.

The retry policy: ``RetryingRoute.configured(policy, idempotent=...)`` makes a
route class for a router; the :func:`retry_policy` decorator sets it for one
endpoint (it wins over the router's).

Answers
-------
=============================================  ===================================
what happened                                  answer
=============================================  ===================================
``HTTPException`` (or a returned response      rolled back; passed through as is
with status >= 400)
:class:`.AmbiguousCommitError` (connection     503, ``"outcome": "unknown"``: retry
lost or 40003 after COMMIT was sent)           with the same idempotency key
:class:`.RetriesExhaustedError`                503 with ``Retry-After``
the policy's ``deadline_s`` passed during the  503 with ``Retry-After: 1``; the
request (:class:`.DeadlineExceededError`)      attempt was cancelled, nothing
                                               committed
database unreachable (connect refused,         503 with ``Retry-After``; one
class 08/57P0x/53, CockroachDB's 58C00/58C01,  WARNING line, traceback at DEBUG
pool timeout)
the server refused the app's login (class 28,  503 with ``Retry-After``; one ERROR
e.g. a wrong password 28P01; 3D000 no such     line naming the SQLSTATE: the app's
database)                                      settings need fixing (asyncpg; libpq
                                               gives psycopg no SQLSTATE for a
                                               refused login: a WARNING line)
integrity error, class 23 (at COMMIT too)      409
data exception, class 22 (e.g. 22003)          422, naming the column (also as
                                               ``"field"``) when the server names
                                               one; on GET/HEAD worded for a read
anything else                                  rolled back, re-raised: the app's
                                               exception handlers, else Starlette's
                                               plain 500 (never a stack trace
                                               unless ``debug=True``)
=============================================  ===================================

Every JSON answer has ``detail`` (FastAPI's shape) and, for database errors,
``sqlstate``; the error itself is logged on ``sqlalchemy_crdb_async.fastapi``.

Sessions
--------
:func:`session_dependency` gives the endpoint an ``AsyncSession`` of the
request's current attempt; the endpoint never commits or rolls back (the route
does; calling ``commit()`` yourself defeats the "no 2xx before COMMIT" rule).
Several dependencies on the same sessionmaker share one session. Two different
sessionmakers give two sessions, committed one after the other in the order
they were opened: that is not atomic; keep one writing session per request.

``session_dependency(Session, read_only=True)`` is the flavour for GET
endpoints: its session runs in an implicit transaction (``AUTOCOMMIT``): each
statement is its own transaction, no ``BEGIN`` and no ``ROLLBACK`` round trip.
What it gives up: two reads do not see one snapshot (a row may change between
them), ``FOR UPDATE`` locks end with their statement, and ORM writes are
refused (``InvalidRequestError`` at flush or at an ORM INSERT/UPDATE/DELETE;
a ``text()`` write would commit at once, so do not send one). On CockroachDB an
implicit transaction is retried by the server itself while its results still
fit the results buffer, ``sql.defaults.results_buffer.size``
(https://www.cockroachlabs.com/docs/stable/transactions#automatic-retries).

:func:`connection_dependency` gives the endpoint the attempt's
``AsyncConnection`` of an engine instead, in the same transaction handling
(commit after the endpoint, rollback, re-run, close): for Core statements and
the prepared fast path (:func:`.prepared`), which need no identity map and no
unit of work, so the request skips the ``Session``'s own begin, flush, commit
and close. ``connection_dependency(engine, read_only=True)`` is its implicit
transaction flavour. A one-statement read can also run the fast path on the
engine itself inside the route (one round trip, no BEGIN or ROLLBACK); the
route still answers its errors and re-runs the endpoint on a retryable one.

Client disconnects
------------------
A request still running 50 ms after it started (``WATCH_AFTER_S`` in
``_disconnect.py``) is watched for ``http.disconnect`` until it answers; a
client that goes away cancels the work (the request's task is cancelled once,
so asyncpg sends its cancel request and the statement ends on the server).
Shorter requests start no watcher task (a task per request cost more client
CPU than a point read); a client that leaves one is noticed at the 50 ms mark
if it is still running. The rollback and close run shielded from that
cancellation, bounded by ``CLEANUP_TIMEOUT_S``, so the connection is back in
the pool before the request task ends.

Caveats
-------
- Streaming responses (``StreamingResponse``, generators) are sent after the
  transaction ended: do not read from the session while streaming.
- The endpoint may run more than once: effects outside the database (e-mail,
  HTTP calls) must be idempotent or deferred to ``BackgroundTasks`` (which run
  after the response, i.e. after COMMIT).
- Uploaded files are not rewound between attempts.
- Admission (the per-engine, contention-adaptive limit on transactions in
  flight that ``run_transaction`` uses too; ``RetryPolicy(admission=False)``
  turns it off) is taken by each attempt when it opens its first writing
  session or connection and handed back with the attempt's outcome after the
  rollback or commit. Read-only ones take no slot: each of their statements
  is its own implicit transaction, and a read does not queue behind a gate
  sized for conflicting writers.
- :func:`route_connection` (``conn = await route_connection(request,
  engine)`` in the endpoint's body) gives the connection that
  :func:`connection_dependency` gives, without FastAPI's dependency
  machinery: for the hottest endpoints (the example app's fast transfer).
- An endpoint that knows its hot rows from the request (a transfer's two
  accounts) can name them: ``await claim_keys(conn, ("account", a),
  ("account", b))`` after its writing session or connection is open. This
  process's requests on the same rows then queue in process until each
  commits, and requests on other rows run beside them
  (:mod:`sqlalchemy_crdb_async.retry._claims`; the example app's transfers
  do it).

See also: :func:`.run_transaction`, :func:`.retrying_session`, :class:`.RetryPolicy`,
:func:`.claim_keys`.
"""

from __future__ import annotations

try:
    import fastapi as _fastapi  # noqa: F401  (absolute: FastAPI itself)
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "sqlalchemy_crdb_async.fastapi needs FastAPI, an optional extra: "
        "pip install 'sqlalchemy-crdb-async[fastapi]'",
        name="fastapi",
    ) from _missing

from ._answers import answer_for
from ._route import CLEANUP_TIMEOUT_S, RetryingRoute, retry_policy
from ._session import connection_dependency, route_connection, session_dependency

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "RetryingRoute",
    "answer_for",
    "connection_dependency",
    "retry_policy",
    "route_connection",
    "session_dependency",
]
