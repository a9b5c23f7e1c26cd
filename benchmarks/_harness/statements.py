"""Statements per operation, counted from the server's own statement log.

Counted once per scenario, apart from the timed cells (logging every
statement would slow the server down): the benchmark makes a second database,
``<bench db>_stmts``, with ``ALTER DATABASE ... SET log_statement = 'all'``,
so only sessions on that database are logged. For each scenario it opens the
variant with a pool of one connection, runs ``WARMUP_OPS`` operations (first
connect, dialect initialisation, statement preparation are not counted), notes
the server log's size, runs ``COUNTED_OPS`` operations one after another, and
counts the log lines written meanwhile that record a statement:

- ``LOG:  statement: ...``: one simple-query message (``BEGIN``, ``COMMIT``,
  asyncpg's pool reset, which sends its four reset statements as one message,
  counts once);
- ``LOG:  execute <name>: ...``: one extended-protocol Execute (a prepared
  statement run; ``executemany`` logs one per row).

Parse/Describe round trips (statement preparation) are not logged by
PostgreSQL and so are not counted. Retries at concurrency 1 are rare, so the
bank's count is that of a transfer that commits at the first attempt.

The log is only readable when the benchmark started the embedded server
itself; with ``--url`` (or on CockroachDB, which has no ``log_statement``)
the count is reported as not measured, with the reason.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import TYPE_CHECKING, Any

from ..workloads import Ctx, Scenario
from .variants import VARIANTS

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import URL

__all__ = ["COUNTED_OPS", "count_statements", "enable_statement_log"]

WARMUP_OPS = 3
COUNTED_OPS = 10
LOG_FLUSH_WAIT_S = 0.2
_STATEMENT_LINE = re.compile(r"\bLOG:\s+(statement|execute [^:]*):")


async def enable_statement_log(admin: Any, database: str) -> None:
    """Log every statement of sessions that connect to ``database`` from now on."""
    await admin.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")


async def count_statements(scenario: Scenario, url: URL, log_path: Path) -> float:
    """Statements the server logged per operation of ``scenario`` on ``url``."""
    variant = VARIANTS[scenario.variant]
    handle = await variant.open(url, 1)
    try:
        ctx = Ctx(handle, random.Random(1))
        if scenario.prepare is not None:
            await scenario.prepare(ctx)
        for _ in range(WARMUP_OPS):
            await scenario.op(ctx)
        await asyncio.sleep(LOG_FLUSH_WAIT_S)
        start = await asyncio.to_thread(_size, log_path)
        for _ in range(COUNTED_OPS):
            await scenario.op(ctx)
        await asyncio.sleep(LOG_FLUSH_WAIT_S)
    finally:
        await asyncio.shield(variant.close(handle))
    text = await asyncio.to_thread(_read_from, log_path, start)
    return len(_STATEMENT_LINE.findall(text)) / COUNTED_OPS


def _size(path: Path) -> int:
    return path.stat().st_size


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", errors="replace")
