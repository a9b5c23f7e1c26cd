"""DDL on the live server: cockroachdb_* index options, computed, identity,
sequences, UUID keys, reserved words; CockroachDB-only paths are marked."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from sqlalchemy_crdb_async import unique_rowid, uuid_primary_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine


def model() -> sa.MetaData:
    meta = sa.MetaData()
    sa.Table(
        "gadget",
        meta,
        uuid_primary_key(),
        sa.Column("serial", sa.BigInteger, sa.Identity(always=True), unique=True),
        sa.Column("price", sa.Integer, nullable=False),
        sa.Column("name", sa.String(40)),
        sa.Column("double", sa.Integer, sa.Computed("price * 2", persisted=True)),
        sa.Column(
            "attrs",
            sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "cockroachdb"),
        ),
        sa.Index("ix_gadget_price_cover", "price", cockroachdb_storing=["name"]),
        sa.Index("ix_gadget_cheap", "price", cockroachdb_where=sa.text("price < 10")),
        sa.Index("ix_gadget_attrs", "attrs", cockroachdb_inverted=True),
    )
    sa.Table(
        "index",  # reserved on CockroachDB, quoted everywhere
        meta,
        sa.Column("family", sa.Integer, primary_key=True),
        sa.Column("nothing", sa.Text),
    )
    sa.Sequence("ticket_seq", start=100, increment=10, metadata=meta)
    return meta


@pytest.fixture
async def created(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    meta = model()
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)


async def _indexdefs(engine: AsyncEngine, table: str) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
            {"t": table},
        )
        return dict(rows.all())  # type: ignore[arg-type]


async def test_index_options_reach_the_server(created: AsyncEngine) -> None:
    defs = await _indexdefs(created, "gadget")
    if created.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        assert "STORING (name)" in defs["ix_gadget_price_cover"]
    else:
        assert "INCLUDE (name)" in defs["ix_gadget_price_cover"]
        assert "USING gin (attrs)" in defs["ix_gadget_attrs"]
    assert "WHERE (price < 10)" in defs["ix_gadget_cheap"]


async def test_identity_computed_uuid_defaults(created: AsyncEngine) -> None:
    gadget = model().tables["gadget"]
    async with created.begin() as conn:
        rows = (
            await conn.execute(
                gadget.insert().returning(
                    gadget.c.id, gadget.c.serial, gadget.c.double
                ),
                [{"price": 3, "name": "a"}, {"price": 5, "name": "b"}],
            )
        ).all()
    assert all(isinstance(r.id, uuid.UUID) for r in rows)
    assert len({r.id for r in rows}) == 2
    assert sorted(r.double for r in rows) == [6, 10]
    assert len({r.serial for r in rows}) == 2
    async with created.begin() as conn:
        with pytest.raises(sa.exc.DBAPIError):  # GENERATED ALWAYS refuses a value
            await conn.execute(gadget.insert().values(price=1, serial=5))


async def test_sequence(created: AsyncEngine) -> None:
    seq = sa.Sequence("ticket_seq")
    async with created.begin() as conn:
        first = await conn.scalar(seq.next_value())
        second = await conn.scalar(seq.next_value())
    assert (first, second) == (100, 110)


async def test_reserved_word_names(created: AsyncEngine) -> None:
    table = model().tables["index"]
    async with created.begin() as conn:
        await conn.execute(table.insert().values(family=1, nothing="x"))
        assert await conn.scalar(sa.select(table.c.nothing)) == "x"


async def test_every_server_keyword_is_quoted(engine: AsyncEngine) -> None:
    """The server's own keyword list: none of its reserved or type/function-name
    keywords (pg_get_keywords() catcode R, T) goes out unquoted."""
    if engine.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip("pg_get_keywords() is PostgreSQL's")
    async with engine.connect() as conn:
        words = set(
            (
                await conn.execute(
                    sa.text(
                        "SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')"
                    )
                )
            ).scalars()
        )
    assert words, "pg_get_keywords() returned nothing"
    assert words - engine.dialect.identifier_preparer.reserved_words == set()


async def test_keyword_column_names_round_trip(engine: AsyncEngine) -> None:
    """Columns named after keywords of either server create, write and read."""
    names = ["lateral", "tablesample", "string", "family", "verbose", "freeze"]
    meta = sa.MetaData()
    table = sa.Table(
        "keywords",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(n, sa.Integer) for n in names),
    )
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                table.insert().values(id=1, **{n: i for i, n in enumerate(names)})
            )
            row = (
                await conn.execute(sa.select(table).where(table.c.lateral == 0))
            ).one()
        assert tuple(row) == (1, *range(len(names)))
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)


async def test_hash_sharded_index_is_refused_on_postgresql(engine: AsyncEngine) -> None:
    if engine.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip("needs PostgreSQL: checks that hash-sharded indexes are refused")
    meta = sa.MetaData()
    sa.Table(
        "sharded",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.DateTime),
        sa.Index("ix_ts", "ts", cockroachdb_hash_sharded=True),
    )
    with pytest.raises(sa.exc.CompileError, match="hash_sharded is CockroachDB-only"):
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)


async def test_integer_stays_integer(created: AsyncEngine) -> None:
    async with created.connect() as conn:
        columns = await conn.run_sync(
            lambda c: {col["name"]: col for col in sa.inspect(c).get_columns("gadget")}
        )
    assert isinstance(columns["price"]["type"], sa.INTEGER)
    assert not isinstance(columns["price"]["type"], sa.BIGINT)


@pytest.mark.crdb_only("hash-sharded indexes and unique_rowid()")
async def test_crdb_hash_sharded_and_unique_rowid(engine: AsyncEngine) -> None:
    meta = sa.MetaData()
    sa.Table(
        "events",
        meta,
        sa.Column("id", sa.BigInteger, primary_key=True, server_default=unique_rowid()),
        sa.Column("ts", sa.DateTime),
        sa.Index(
            "ix_events_ts",
            "ts",
            cockroachdb_hash_sharded=True,
            cockroachdb_bucket_count=8,
        ),
    )
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    try:
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("events"))
            columns = await conn.run_sync(lambda c: sa.inspect(c).get_columns("events"))
        (index,) = indexes
        assert index["column_names"] == ["ts"]
        assert index["dialect_options"]["cockroachdb_bucket_count"] == 8
        assert [c["name"] for c in columns] == ["id", "ts"]  # shard column hidden
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)
