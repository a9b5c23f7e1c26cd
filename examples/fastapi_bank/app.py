"""A small bank behind FastAPI: accounts and transfers on CockroachDB.

Run it from a checkout (one command once the ``example`` extra is installed)::

    pip install -e '.[example]'
    uvicorn examples.fastapi_bank.app:app

With no ``DATABASE_URL`` it starts a throwaway PostgreSQL (the test suite's
embedded server), creates the tables and opens two demo accounts; point it at
CockroachDB with
``DATABASE_URL=cockroachdb+asyncpg://root@localhost:26257/defaultdb?sslmode=disable``.
Then open http://127.0.0.1:8000/docs.

What it shows:

- every endpoint on :class:`~sqlalchemy_crdb_async.fastapi.RetryingRoute`:
  the route commits after the endpoint, re-runs it on 40001 (at any statement
  or at COMMIT), never answers 2xx for a transaction that did not commit, and
  maps database errors to HTTP answers; the endpoints just use their session;
- each hot endpoint twice, the ORM way and on the prepared fast path
  (:func:`~sqlalchemy_crdb_async.prepared`: statements compiled once, prepared
  once per connection, with SQLAlchemy's types and ``Row``), same answers:
  ``GET /accounts/{id}`` (``session.get`` on the read-only session) and
  ``GET /fast/accounts/{id}`` (one prepared statement on the engine: one round
  trip, no BEGIN, ROLLBACK or reset); ``POST /transfers`` (ORM objects, flushed
  by the session) and ``POST /fast/transfers`` (the same statements prepared,
  on the route's connection from ``route_connection``);
- the other read endpoints on the read-only session (one implicit transaction
  per statement: no BEGIN/ROLLBACK round trips);
- hot rows named up front: both transfer endpoints call
  :func:`~sqlalchemy_crdb_async.claim_keys` with their two accounts (and
  their idempotency key), so transfers of this process that share an account
  queue for it instead of conflicting on the server, and transfers on other
  accounts run beside them (outside the engine's admission gate);
- idempotency keys: ``POST /transfers`` (or ``/fast/transfers``) with an
  ``Idempotency-Key`` header
  moves money once however often it is sent (the key is checked and stored in
  the transfer's own transaction); a replay answers the first result;
- ``GET /transfers`` pages with a keyset cursor (``created_at``, ``id``), never
  ``OFFSET``;
- UUID keys made by the server (``gen_random_uuid()``), which spread writes
  across a CockroachDB cluster;
- one engine per process sized by
  :class:`~sqlalchemy_crdb_async.PoolSettings` (``POOL_VCPUS`` /
  ``POOL_APP_INSTANCES``);
- ``async with retrying_session(...)`` for work outside a request (the demo
  accounts at startup);
- ``GET /healthz``: the server, the pool and the retry counters;
- ``GET /search?q=`` (``&k=``): the articles of :mod:`examples.vector_search`
  nearest to ``q`` (a ``VECTOR(64)`` column, cosine distance), loaded at
  startup; 501 on a server without vectors (CockroachDB below v25.3, PostgreSQL
  without pgvector).

Endpoints: ``POST /accounts``, ``GET /accounts`` (paged by id),
``GET /accounts/{id}``, ``GET /fast/accounts/{id}``, ``POST /transfers``,
``POST /fast/transfers``, ``GET /transfers`` (newest first,
``?account_id=``, ``?after=<next>``), ``GET /healthz``, ``GET /search``.

Answers: 404 unknown account; 409 overdraft or a balance that would pass
NUMERIC(14,2); 422 malformed input (an id that is not a UUID, an empty
Idempotency-Key, one reused for another transfer); 503 when the database is
busy or unreachable (after one connect, at most ``connect_timeout``, 2 s unless
the URL sets it), or when a COMMIT's outcome is unknown (retry with the same
key). Amounts are answered as stored (two places: ``"0.10"``).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints'
# annotations at run time, and Write/Read below are local to create_app.
import base64
import binascii
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import anyio
import sqlalchemy as sa
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
)
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlalchemy_crdb_async import (
    PoolSettings,
    RetryPolicy,
    claim_keys,
    pool_stats,
    prepared,
    retry_stats,
    retrying_session,
)
from sqlalchemy_crdb_async.fastapi import (
    RetryingRoute,
    route_connection,
    session_dependency,
)

from .. import vector_search
from .database import Database, open_database

#: The largest NUMERIC(14, 2).
MAX_BALANCE = Decimal("999999999999.99")
#: An amount as the database stores it: at most 2 places, given 2 places
#: ("0.1" becomes "0.10"), so a first answer equals its idempotent replay.
Money = Annotated[
    Decimal,
    Field(max_digits=14, decimal_places=2),
    AfterValidator(lambda d: d.quantize(Decimal("0.01"))),
]
#: Many attempts, bounded by the deadline: on a few hot accounts a transfer
#: may lose the race many times before it wins.
POLICY = RetryPolicy(
    max_attempts=200, initial_backoff_s=0.005, max_backoff_s=0.1, deadline_s=30.0
)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "bank_accounts"

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    owner: Mapped[str] = mapped_column(sa.String(100))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))


class Transfer(Base):
    __tablename__ = "bank_transfers"
    __table_args__ = (sa.Index("bank_transfers_page", "created_at", "id"),)
    # Fetch id and created_at with the INSERT (RETURNING), not a second query.
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=sa.text("gen_random_uuid()")
    )
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    from_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey(Account.id))
    to_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey(Account.id))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    #: The balances right after this transfer.
    from_balance: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    to_balance: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


# The fast path (prepared(): compiled once, run as prepared statements).
#: GET /accounts/{id}, on the engine: one round trip.
ACCOUNT_BY_ID = prepared(
    sa.select(Account.id, Account.owner, Account.balance).where(
        Account.id == sa.bindparam("id")
    )
)
#: POST /fast/transfers: the ORM transfer's statements, in the route's
#: transaction (the route commits it and re-runs the endpoint on 40001).
_TRANSFER_COLUMNS = (
    Transfer.id,
    Transfer.from_id,
    Transfer.to_id,
    Transfer.amount,
    Transfer.from_balance,
    Transfer.to_balance,
    Transfer.created_at,
)
TRANSFER_BY_KEY = prepared(
    sa.select(*_TRANSFER_COLUMNS).where(Transfer.idempotency_key == sa.bindparam("key"))
)
#: Both rows locked in id order (no expanding IN on the fast path: two binds).
LOCK_PAIR = prepared(
    sa.select(Account.id, Account.balance)
    .where(sa.or_(Account.id == sa.bindparam("a"), Account.id == sa.bindparam("b")))
    .order_by(Account.id)
    .with_for_update()
)
SET_BALANCE = prepared(
    sa.update(Account)
    .where(Account.id == sa.bindparam("account"))
    .values(balance=sa.bindparam("balance"))
)
RECORD_TRANSFER = prepared(
    sa.insert(Transfer)
    .values(
        idempotency_key=sa.bindparam("key"),
        from_id=sa.bindparam("from_id"),
        to_id=sa.bindparam("to_id"),
        amount=sa.bindparam("amount"),
        from_balance=sa.bindparam("from_balance"),
        to_balance=sa.bindparam("to_balance"),
    )
    .returning(*_TRANSFER_COLUMNS)
)


class NewAccount(BaseModel):
    owner: str = Field(min_length=1, max_length=100)
    balance: Money = Field(ge=0)


class AccountOut(BaseModel):
    id: uuid.UUID
    owner: str
    balance: Decimal


class TransferIn(BaseModel):
    from_id: uuid.UUID
    to_id: uuid.UUID
    amount: Money = Field(gt=0)


class TransferOut(BaseModel):
    id: uuid.UUID
    from_id: uuid.UUID
    to_id: uuid.UUID
    amount: Decimal
    from_balance: Decimal
    to_balance: Decimal
    created_at: datetime


class TransferPage(BaseModel):
    items: list[TransferOut]
    #: Pass as ``after`` for the next page; None on the last page.
    next: str | None


def _plain(stats: Any) -> dict[str, Any]:
    """A stats dataclass as JSON-ready data (its mappings as dicts)."""
    return {
        f.name: (dict(v) if isinstance(v := getattr(stats, f.name), Mapping) else v)
        for f in dataclasses.fields(stats)
    }


def _account_out(account: Account) -> AccountOut:
    return AccountOut(id=account.id, owner=account.owner, balance=account.balance)


def _transfer_out(t: Transfer) -> TransferOut:
    return TransferOut(
        id=t.id,
        from_id=t.from_id,
        to_id=t.to_id,
        amount=t.amount,
        from_balance=t.from_balance,
        to_balance=t.to_balance,
        created_at=t.created_at,
    )


def _cursor(t: Transfer) -> str:
    raw = f"{t.created_at.isoformat()}|{t.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, ident = base64.urlsafe_b64decode(cursor).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(422, "after: not a cursor from a previous page") from None


#: The optional Idempotency-Key header; an empty key is refused (422 naming
#: the header), not stored as a key.
Key = Annotated[str | None, Header(min_length=1, max_length=200)]


async def _claim_transfer(
    handle: AsyncSession | AsyncConnection,
    body: TransferIn,
    idempotency_key: str | None,
) -> None:
    """Queue behind this process's transfers on the same accounts (or with the
    same idempotency key, whose second request then answers the first's
    result) until this attempt ends; see claim_keys()."""
    keys: list[object] = [("account", body.from_id), ("account", body.to_id)]
    if idempotency_key is not None:
        keys.append(("transfer", idempotency_key))
    await claim_keys(handle, *keys)


def _check_pair(body: TransferIn) -> None:
    if body.from_id == body.to_id:
        raise HTTPException(422, "from_id and to_id must differ")


def _replayed(done: TransferOut, body: TransferIn, response: Response) -> TransferOut:
    """The first answer for a key used before, if it was for this transfer."""
    if (done.from_id, done.to_id, done.amount) != (
        body.from_id,
        body.to_id,
        body.amount,
    ):
        raise HTTPException(
            422, "Idempotency-Key was already used for another transfer"
        )
    response.headers["Idempotent-Replayed"] = "true"
    return done


def _new_balances(
    balances: Mapping[uuid.UUID, Decimal], body: TransferIn
) -> tuple[Decimal, Decimal]:
    """The two balances after the transfer (404, 409 when it cannot be done)."""
    for wanted in (body.from_id, body.to_id):
        if wanted not in balances:
            raise HTTPException(404, f"no account {wanted}")
    source, target = balances[body.from_id], balances[body.to_id]
    if source < body.amount:
        raise HTTPException(409, "insufficient funds")
    if target + body.amount > MAX_BALANCE:
        raise HTTPException(409, f"the target balance would pass {MAX_BALANCE}")
    return source - body.amount, target + body.amount


class SearchHit(BaseModel):
    title: str
    distance: float


async def prepare_search(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> str | None:
    """Articles for ``GET /search``; None when ready, else why there are none."""
    dialect: Any = engine.dialect
    async with engine.connect() as conn:
        if dialect.is_cockroachdb:
            # a cosine vector index needs v25.3 (cockroach PR #147681)
            ok = dialect.crdb_at_least(25, 3)
        else:
            ok = bool(
                await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_available_extensions "
                        "WHERE name = 'vector'"
                    )
                )
            )
    if not ok:
        return "vector search needs CockroachDB v25.3+ or PostgreSQL with pgvector"
    await vector_search.create_schema(engine)
    await vector_search.load(sessions, SEARCH_ROWS)
    return None


#: Articles loaded for GET /search.
SEARCH_ROWS = 1_000


def make_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    """The app's engine; the pool sized for the cluster unless ``pool`` is given."""
    from sqlalchemy.ext.asyncio import create_async_engine

    settings = pool or PoolSettings.for_cluster(
        vcpus=int(os.environ.get("POOL_VCPUS", "4")),
        app_instances=int(os.environ.get("POOL_APP_INSTANCES", "1")),
    )
    return create_async_engine(url, **settings.engine_kwargs())


async def open_demo_accounts(
    sessions: async_sessionmaker[AsyncSession], policy: RetryPolicy
) -> None:
    """Two accounts to play with, once (work outside a request: retrying_session).

    The ids are made here, not by the server: a replayed statement must send
    the same values (see retrying_session's caveats).
    """
    async with retrying_session(sessions, policy=policy) as session:
        if await session.scalar(sa.select(sa.func.count()).select_from(Account)):
            return
        session.add_all(
            [
                Account(id=uuid.uuid4(), owner="alice", balance=Decimal("100.00")),
                Account(id=uuid.uuid4(), owner="bob", balance=Decimal("50.00")),
            ]
        )


def create_app(
    url: str | None = None,
    *,
    demo_accounts: bool | None = None,
    pool: PoolSettings | None = None,
    policy: RetryPolicy = POLICY,
) -> FastAPI:
    """The app; ``url`` defaults to ``$DATABASE_URL``, else an embedded server.

    ``demo_accounts`` (default: only on the embedded server) opens two
    accounts at startup when there are none. ``pool`` and ``policy`` replace
    the pool sizing and the retry policy (the benchmarks set both).
    """
    database: Database = open_database(url)
    engine = make_engine(database.url, pool)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    Write = Annotated[AsyncSession, Depends(session_dependency(sessions))]
    Read = Annotated[
        AsyncSession, Depends(session_dependency(sessions, read_only=True))
    ]
    seed = database.embedded if demo_accounts is None else demo_accounts

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            if seed:
                await open_demo_accounts(sessions, policy)
            app.state.search_unavailable = await prepare_search(engine, sessions)
            yield
        finally:
            await engine.dispose()
            await anyio.to_thread.run_sync(database.close)

    app = FastAPI(title="sqlalchemy-crdb-async bank", lifespan=lifespan)
    app.state.engine = engine
    app.state.sessions = sessions
    router = APIRouter(route_class=RetryingRoute.configured(policy))

    @router.post("/accounts", status_code=201)
    async def open_account(body: NewAccount, session: Write) -> AccountOut:
        # RETURNING the stored row: the answer is what the database holds.
        account = await session.scalar(
            sa.insert(Account)
            .values(owner=body.owner, balance=body.balance)
            .returning(Account)
        )
        assert account is not None
        return _account_out(account)

    @router.get("/accounts")
    async def list_accounts(
        session: Read,
        after: uuid.UUID | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[AccountOut]:
        """By id; ``after`` is the last id of the previous page (keyset)."""
        query = sa.select(Account).order_by(Account.id).limit(limit)
        if after is not None:
            query = query.where(Account.id > after)
        return [_account_out(a) for a in await session.scalars(query)]

    @router.get("/accounts/{account_id}")
    async def get_account(account_id: uuid.UUID, session: Read) -> AccountOut:
        """The ORM way: ``session.get`` on the read-only session."""
        account = await session.get(Account, account_id)
        if account is None:
            raise HTTPException(404, f"no account {account_id}")
        return _account_out(account)

    @router.get("/fast/accounts/{account_id}")
    async def get_account_fast(account_id: uuid.UUID) -> AccountOut:
        """The fast path on the engine: one round trip (no BEGIN, ROLLBACK or
        reset), no session; the route still answers the database's errors
        and re-runs the endpoint on a retryable one."""
        row = await ACCOUNT_BY_ID.one_or_none(engine, id=account_id)
        if row is None:
            raise HTTPException(404, f"no account {account_id}")
        return AccountOut(id=row.id, owner=row.owner, balance=row.balance)

    @router.post("/transfers")
    async def transfer(
        body: TransferIn,
        session: Write,
        response: Response,
        idempotency_key: Key = None,
    ) -> TransferOut:
        """The ORM way: objects loaded, changed, and flushed by the session."""
        _check_pair(body)
        await _claim_transfer(session, body, idempotency_key)
        if idempotency_key is not None:
            done = await session.scalar(
                sa.select(Transfer).where(Transfer.idempotency_key == idempotency_key)
            )
            if done is not None:
                return _replayed(_transfer_out(done), body, response)
        # Read-modify-write on ORM objects; both rows locked in id order, so
        # two transfers on the same pair queue instead of deadlocking.
        rows = await session.scalars(
            sa.select(Account)
            .where(Account.id.in_([body.from_id, body.to_id]))
            .order_by(Account.id)
            .with_for_update()
        )
        accounts = {a.id: a for a in rows}
        from_balance, to_balance = _new_balances(
            {i: a.balance for i, a in accounts.items()}, body
        )
        source, target = accounts[body.from_id], accounts[body.to_id]
        source.balance, target.balance = from_balance, to_balance
        record = Transfer(
            idempotency_key=idempotency_key,
            from_id=source.id,
            to_id=target.id,
            amount=body.amount,
            from_balance=from_balance,
            to_balance=to_balance,
        )
        session.add(record)
        await session.flush()
        return _transfer_out(record)

    @router.post("/fast/transfers")
    async def transfer_fast(
        body: TransferIn,
        request: Request,
        response: Response,
        idempotency_key: Key = None,
    ) -> TransferOut:
        """The same transfer on the fast path: the same statements, prepared,
        run on the route's connection, in its transaction; same answers. The
        connection comes from route_connection() in the body, not Depends:
        the route's own connection, without FastAPI's dependency machinery."""
        _check_pair(body)
        conn = await route_connection(request, engine)
        await _claim_transfer(conn, body, idempotency_key)
        if idempotency_key is not None:
            done = await TRANSFER_BY_KEY.one_or_none(conn, key=idempotency_key)
            if done is not None:
                return _replayed(TransferOut(**done._asdict()), body, response)
        rows = await LOCK_PAIR.all(conn, a=body.from_id, b=body.to_id)
        balances = {row.id: row.balance for row in rows}
        from_balance, to_balance = _new_balances(balances, body)
        await SET_BALANCE.execute(conn, account=body.from_id, balance=from_balance)
        await SET_BALANCE.execute(conn, account=body.to_id, balance=to_balance)
        record = await RECORD_TRANSFER.one(
            conn,
            key=idempotency_key,
            from_id=body.from_id,
            to_id=body.to_id,
            amount=body.amount,
            from_balance=from_balance,
            to_balance=to_balance,
        )
        return TransferOut(**record._asdict())

    @router.get("/transfers")
    async def list_transfers(
        session: Read,
        account_id: uuid.UUID | None = None,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> TransferPage:
        """Newest first; ``after`` is the ``next`` of the previous page."""
        query = sa.select(Transfer).order_by(
            Transfer.created_at.desc(), Transfer.id.desc()
        )
        if account_id is not None:
            query = query.where(
                sa.or_(Transfer.from_id == account_id, Transfer.to_id == account_id)
            )
        if after is not None:
            query = query.where(
                sa.tuple_(Transfer.created_at, Transfer.id) < _parse_cursor(after)
            )
        page = list(await session.scalars(query.limit(limit + 1)))
        more = len(page) > limit
        items = page[:limit]
        return TransferPage(
            items=[_transfer_out(t) for t in items],
            next=_cursor(items[-1]) if more else None,
        )

    @router.get("/search")
    async def search(
        session: Read,
        q: Annotated[str, Query(min_length=1, max_length=200)],
        k: Annotated[int, Query(ge=1, le=50)] = 5,
    ) -> list[SearchHit]:
        """The ``k`` articles nearest to ``q`` (examples/vector_search.py)."""
        if app.state.search_unavailable:
            raise HTTPException(501, app.state.search_unavailable)
        rows = await session.execute(vector_search.nearest(q, k))
        return [SearchHit(title=t, distance=d) for t, d in rows]

    @router.get("/healthz")
    async def healthz(session: Read) -> dict[str, Any]:
        pool = dict(pool_stats(engine))  # before this request takes a connection
        await session.execute(sa.text("SELECT 1"))
        info = engine.dialect.server_info  # type: ignore[attr-defined]
        return {
            "server": info.describe(),
            "pool": pool,
            "retries": _plain(retry_stats(engine)),
        }

    app.include_router(router)
    return app


def __getattr__(name: str) -> Any:
    """``app`` is made on first use (``uvicorn examples.fastapi_bank.app:app``),
    so importing this module starts no server."""
    if name != "app":
        raise AttributeError(name)
    try:
        made = create_app()
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    globals()["app"] = made
    return made
