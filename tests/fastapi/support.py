"""A small app on RetryingRoute whose COMMITs the real server can be told to fail.

Rows inserted into ``notes`` carry ``sqlstate``, ``failures`` and ``seq``: a
deferred constraint trigger raises that SQLSTATE at COMMIT the first
``failures`` times, counted by the sequence ``seq`` (sequences are not
transactional, so the count survives the rollback of a failed attempt). The
server raises the error; nothing is faked on the client.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints'
# Annotated aliases, which are local to build_app, at run time.

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqlalchemy_crdb_async import RetryPolicy, retrying_session
from sqlalchemy_crdb_async.fastapi import (
    RetryingRoute,
    connection_dependency,
    retry_policy,
    route_connection,
    session_dependency,
)

from ..retry.support import count_rows

SETUP = [
    "DROP TABLE IF EXISTS notes",
    """
    CREATE TABLE notes (
      id serial PRIMARY KEY, body text NOT NULL,
      sqlstate text, failures int NOT NULL DEFAULT 0, seq text
    )
    """,
    """
    CREATE OR REPLACE FUNCTION notes_at_commit() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.sqlstate IS NOT NULL AND nextval(NEW.seq::regclass) <= NEW.failures THEN
        RAISE EXCEPTION 'forced at COMMIT' USING ERRCODE = NEW.sqlstate;
      END IF;
      RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER notes_deferred AFTER INSERT ON notes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION notes_at_commit()
    """,
]

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)


class NoteIn(BaseModel):
    body: str
    sqlstate: str | None = None
    failures: int = 0


@dataclass
class Probe:
    """What the test app saw: endpoint and dependency runs by name."""

    runs: Counter[str] = field(default_factory=Counter)
    #: Set by /hold, per note body, once it wrote and is waiting.
    holding: dict[str, asyncio.Event] = field(default_factory=dict)

    def held(self, body: str) -> asyncio.Event:
        return self.holding.setdefault(body, asyncio.Event())


def sleep_tag(body: str) -> str:
    """What /hold?in_query=true puts in its statement's comment for ``body``."""
    return f"hold {body} end"


async def install(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for statement in SETUP:
            await conn.exec_driver_sql(statement)


async def count_notes(engine: AsyncEngine, body: str) -> int:
    return await count_rows(engine, "notes", f"body = '{body}'")


def build_app(url: str, probe: Probe) -> tuple[FastAPI, AsyncEngine]:
    engine = create_async_engine(url, pool_size=20, max_overflow=0)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    write = session_dependency(maker)
    other_maker = async_sessionmaker(engine, expire_on_commit=False)
    Other = Annotated[AsyncSession, Depends(session_dependency(other_maker))]
    read = session_dependency(maker, read_only=True)
    Write = Annotated[AsyncSession, Depends(write)]
    Read = Annotated[AsyncSession, Depends(read)]
    Conn = Annotated[AsyncConnection, Depends(connection_dependency(engine))]
    ReadConn = Annotated[
        AsyncConnection, Depends(connection_dependency(engine, read_only=True))
    ]

    async def counted_dependency() -> int:
        probe.runs["dependency"] += 1
        return probe.runs["dependency"]

    router = APIRouter(route_class=RetryingRoute.configured(FAST))

    async def insert(
        session: AsyncSession | AsyncConnection, note: NoteIn, seq: str | None
    ) -> int:
        result = await session.execute(
            sa.text(
                "INSERT INTO notes (body, sqlstate, failures, seq) "
                "VALUES (:b, :s, :f, :q) RETURNING id"
            ),
            {"b": note.body, "s": note.sqlstate, "f": note.failures, "q": seq},
        )
        return int(result.scalar_one())

    @router.post("/notes")
    async def add_note(
        note: NoteIn,
        session: Write,
        dependency_run: Annotated[int, Depends(counted_dependency)],
        seq: str | None = None,
    ) -> dict[str, Any]:
        probe.runs["add_note"] += 1
        note_id = await insert(session, note, seq)
        return {"id": note_id, "dependency_run": dependency_run}

    @router.post("/notes/two-sessions")
    async def add_two_notes(
        note: NoteIn, first: Write, second: Other, seq: str
    ) -> None:
        probe.runs["two_sessions"] += 1
        await insert(first, NoteIn(body=note.body), None)  # commits first
        await insert(second, note, seq)  # fails at its own COMMIT

    @router.post("/notes/lose-connection")
    async def add_note_losing_the_connection(note: NoteIn, session: Write) -> None:
        probe.runs["lose_connection"] += 1
        await insert(session, note, None)
        if probe.runs["lose_connection"] == 1:
            # The server ends this session (57P01) before COMMIT was sent.
            await session.execute(
                sa.text("SELECT pg_terminate_backend(pg_backend_pid())")
            )

    @router.post("/notes/teapot")
    async def add_then_refuse(note: NoteIn, session: Write) -> None:
        await insert(session, note, None)
        raise HTTPException(418, "no notes today")

    @router.post("/notes/refused-response")
    async def add_then_answer_error(note: NoteIn, session: Write) -> JSONResponse:
        await insert(session, note, None)
        return JSONResponse({"detail": "refused"}, status_code=400)

    @router.post("/notes/two-attempts")
    @retry_policy(RetryPolicy(max_attempts=2, initial_backoff_s=0.001))
    async def add_note_twice_at_most(note: NoteIn, session: Write, seq: str) -> None:
        probe.runs["two_attempts"] += 1
        await insert(session, note, seq)

    @router.post("/notes/replayed")
    async def add_note_replayed(note: NoteIn, session: Write) -> dict[str, int]:
        # retrying_session inside the route: its own transaction, committed on
        # leaving the block (the route's session is untouched here).
        async with retrying_session(maker) as own:
            return {"id": await insert(own, note, None)}

    async def in_transaction(
        session: AsyncSession | AsyncConnection,
    ) -> dict[str, Any]:
        await session.execute(sa.text("SELECT 1"))
        conn = session if isinstance(session, AsyncConnection) else None
        raw = await (conn or await session.connection()).get_raw_connection()
        # The server's transaction status, from its ReadyForQuery message.
        return {"in_transaction": raw.driver_connection.is_in_transaction()}

    @router.get("/implicit")
    async def implicit(session: Read) -> dict[str, Any]:
        return await in_transaction(session)

    @router.get("/explicit")
    async def explicit(session: Write) -> dict[str, Any]:
        return await in_transaction(session)

    @router.post("/implicit/write")
    async def write_on_reader(note: NoteIn, session: Read) -> None:
        notes = sa.table("notes", sa.column("body"))
        await session.execute(sa.insert(notes).values(body=note.body))

    @router.post("/conn/notes")
    async def add_note_on_a_connection(
        note: NoteIn, conn: Conn, seq: str | None = None
    ) -> dict[str, Any]:
        probe.runs["conn_note"] += 1
        return {"id": await insert(conn, note, seq)}

    @router.post("/conn/notes/teapot")
    async def add_on_a_connection_then_refuse(note: NoteIn, conn: Conn) -> None:
        await insert(conn, note, None)
        raise HTTPException(418, "no notes today")

    @router.get("/conn/implicit")
    async def conn_implicit(conn: ReadConn) -> dict[str, Any]:
        return await in_transaction(conn)

    @router.get("/conn/explicit")
    async def conn_explicit(conn: Conn) -> dict[str, Any]:
        return await in_transaction(conn)

    @router.post("/conn/hold")
    async def hold_on_a_connection(
        note: NoteIn, conn: Conn, in_query: bool = False
    ) -> None:
        await hold_after_insert(conn, note, in_query)

    @router.post("/hold")
    async def hold(note: NoteIn, session: Write, in_query: bool = False) -> None:
        await hold_after_insert(session, note, in_query)

    async def hold_after_insert(
        session: AsyncSession | AsyncConnection, note: NoteIn, in_query: bool
    ) -> None:
        await insert(session, note, None)
        probe.held(note.body).set()
        # Far longer than the test's bound: only the disconnect ends it.
        if in_query:
            # The note's body in a comment: the test sees this very statement
            # running in pg_stat_activity before it drops the client.
            await session.execute(
                sa.text(f"SELECT pg_sleep(3600) /* {sleep_tag(note.body)} */")
            )
        else:
            await asyncio.sleep(3600)

    @router.post("/rc/notes")
    async def add_note_on_the_route_connection(
        note: NoteIn, request: Request, seq: str | None = None
    ) -> dict[str, Any]:
        probe.runs["rc_note"] += 1
        conn = await route_connection(request, engine)
        again = await route_connection(request, engine)
        assert again is conn  # one connection per request, engine and mode
        return {"id": await insert(conn, note, seq)}

    @router.get("/rc/implicit")
    async def rc_implicit(request: Request) -> dict[str, Any]:
        return await in_transaction(
            await route_connection(request, engine, read_only=True)
        )

    @router.get("/rc/explicit")
    async def rc_explicit(request: Request) -> dict[str, Any]:
        return await in_transaction(await route_connection(request, engine))

    plain = APIRouter()  # not a RetryingRoute: nobody owns a transaction

    @plain.get("/plain/rc")
    async def rc_outside_the_route(request: Request) -> None:
        await route_connection(request, engine)

    app = FastAPI()
    app.include_router(router)
    app.include_router(plain)
    return app, engine
