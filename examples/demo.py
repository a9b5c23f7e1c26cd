"""A first look: create a table, write and read through ``cockroachdb+asyncpg``.

    python examples/demo.py                 # on an embedded PostgreSQL it starts
    python examples/demo.py --url cockroachdb://root@localhost:26257/defaultdb

Without ``--url`` (or ``CRDB_TEST_URL``) the demo starts the same throwaway
server the test suite uses: a ``cockroach`` binary if one is on PATH, else an
embedded PostgreSQL, and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import sqlalchemy_crdb_async  # noqa: F401 - registers the cockroachdb dialects
from sqlalchemy_crdb_async.testing.provider import as_driver_url, resolve_server

metadata = sa.MetaData()
accounts = sa.Table(
    "demo_accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(50), nullable=False),
    sa.Column("balance", sa.Numeric(12, 2), nullable=False),
)


async def demo(url: sa.URL) -> None:
    engine = create_async_engine(url)
    try:
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        dialect = engine.dialect
        print(f"dialect      : {type(dialect).__name__} ({dialect.driver})")
        print(f"server       : {dialect.server_info.describe()}")
        print(f"  flavor     : {dialect.server_flavor}")
        print(f"  crdb       : {dialect.crdb_version}")
        print(f"  speaks PG  : {dialect.server_version_info}")
        print("created      : table demo_accounts")
        rows = [
            {"id": i, "owner": name, "balance": 100 * i}
            for i, name in enumerate(["ada", "grace", "edsger"], start=1)
        ]
        async with engine.begin() as conn:
            await conn.execute(accounts.insert(), rows)
            await conn.execute(
                accounts.update()
                .where(accounts.c.id == 1)
                .values(balance=accounts.c.balance - 25)
            )
        print(f"wrote        : {len(rows)} rows, then moved 25.00 out of account 1")
        async with engine.connect() as conn:
            result = await conn.execute(sa.select(accounts).order_by(accounts.c.id))
            for row in result:
                print(f"  read       : {row.id} {row.owner:<7} {row.balance:>8}")
            total = await conn.scalar(sa.select(sa.func.sum(accounts.c.balance)))
            print(f"total        : {total}")
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        print(f"done in      : {time.perf_counter() - started:.2f} s")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="server URL (default: start a test server)")
    args = parser.parse_args()
    server = resolve_server(args.url)
    try:
        print(f"using        : {server.describe()}")
        asyncio.run(demo(as_driver_url(server.url, "asyncpg")))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
