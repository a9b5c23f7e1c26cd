"""Real server-side failures for the retry tests (imported by test_retry_*.py).

Everything here makes the *server* raise: PL/pgSQL functions and deferred
constraint triggers raise SQLSTATE 40001 a set number of times, counted by a
sequence (sequences are not transactional, so the count survives the rollback
that a retry performs).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SETUP = [
    # fail_times(n, seq): raise 40001 on the first n calls counted by seq.
    """
    CREATE OR REPLACE FUNCTION fail_times(n int, seq text) RETURNS int
    LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval(seq::regclass) <= n THEN
        RAISE EXCEPTION 'forced by fail_times' USING ERRCODE = 'serialization_failure';
      END IF;
      RETURN 1;
    END $$
    """,
    # Rows inserted into commit_probe make COMMIT fail with 40001 `failures` times.
    """
    CREATE TABLE IF NOT EXISTS commit_probe (
      id serial PRIMARY KEY, seq text NOT NULL, failures int NOT NULL, note text
    )
    """,
    """
    CREATE OR REPLACE FUNCTION commit_probe_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval(NEW.seq::regclass) <= NEW.failures THEN
        RAISE EXCEPTION 'forced at COMMIT' USING ERRCODE = 'serialization_failure';
      END IF;
      RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS commit_probe_deferred ON commit_probe",
    """
    CREATE CONSTRAINT TRIGGER commit_probe_deferred AFTER INSERT ON commit_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_probe_check()
    """,
    "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int NOT NULL)",
]

_names = itertools.count()


async def install(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for statement in SETUP:
            await conn.exec_driver_sql(statement)


async def new_counter(engine: AsyncEngine) -> str:
    """A fresh sequence name for fail_times() / commit_probe."""
    name = f"retry_counter_{next(_names)}"
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE SEQUENCE {name}")
    return name


async def fail_times(conn: AsyncConnection, n: int, seq: str) -> None:
    await conn.exec_driver_sql(f"SELECT fail_times({n}, '{seq}')")


async def count_rows(engine: AsyncEngine, table: str, where: str = "true") -> int:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            f"SELECT count(*) FROM {table} WHERE {where}"
        )
        return int(result.scalar_one())
