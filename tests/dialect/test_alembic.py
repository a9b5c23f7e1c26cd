"""Alembic on the live server: zero-diff autogenerate on a realistic model,
identity changes, table renames, transactional DDL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql as pg

from sqlalchemy_crdb_async.dialect.alembic import CockroachDBImpl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine


def realistic_model() -> sa.MetaData:
    """Every type, every index kind, FKs, an enum, identity, computed, comments."""
    meta = sa.MetaData()
    status = pg.ENUM("new", "paid", "shipped", name="order_status", metadata=meta)
    sa.Table(
        "customer",
        meta,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
        sa.Column("name", sa.Text, comment="display name"),
        sa.Column("code", sa.CHAR(4)),
        sa.Column("vip", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("age", sa.SmallInteger),
        sa.Column("score", sa.Integer),
        sa.Column("ratio", sa.REAL),
        sa.Column("weight", sa.Double),
        sa.Column("balance", sa.Numeric(12, 2), server_default="0"),
        sa.Column("born", sa.Date),
        sa.Column("wakes", sa.Time),
        sa.Column("wakes_tz", sa.Time(timezone=True)),
        sa.Column("seen", sa.DateTime),
        sa.Column("created", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("trial", sa.Interval),
        sa.Column("token", sa.Uuid, server_default=sa.text("gen_random_uuid()")),
        sa.Column("ip", pg.INET),
        sa.Column("avatar", sa.LargeBinary),
        sa.Column("prefs", pg.JSONB),
        sa.Column("tags", pg.ARRAY(sa.Text)),
        sa.Column(
            "email_lower", sa.String(200), sa.Computed("lower(email)", persisted=True)
        ),
        sa.Index("ix_customer_name", "name"),
        sa.Index("ix_customer_vip_score", "score", postgresql_where=sa.text("vip")),
        sa.Index("ix_customer_prefs", "prefs", postgresql_using="gin"),
        sa.Index("ix_customer_code_cover", "code", postgresql_include=["age"]),
        sa.Index("ix_customer_lower_name", sa.func.lower(sa.column("name"))),
        comment="people who order",
    )
    sa.Table(
        "orders",
        meta,
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column(
            "customer_id",
            sa.BigInteger,
            sa.ForeignKey("customer.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("status", status, nullable=False, server_default="new"),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
        sa.Column("doc", pg.JSON),
        sa.UniqueConstraint("customer_id", "total", name="uq_orders_customer_total"),
        sa.CheckConstraint("total >= 0", name="ck_orders_total"),
    )
    return meta


@pytest.fixture
async def created(
    engine: AsyncEngine,
) -> AsyncIterator[tuple[AsyncEngine, sa.MetaData]]:
    meta = realistic_model()
    async with engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
        await conn.run_sync(meta.create_all)
    try:
        yield engine, meta
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)


def _diff(conn: Connection, meta: sa.MetaData) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, meta))


# Runs on whatever server the plugin found: the embedded PostgreSQL in CI, and
# CockroachDB when CRDB_TEST_URL / a cockroach binary provides one.
async def test_autogenerate_reports_zero_differences_after_create_all(
    created: tuple[AsyncEngine, sa.MetaData],
) -> None:
    engine, meta = created
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff, meta)
    assert diff == []


async def test_autogenerate_still_sees_real_changes(
    created: tuple[AsyncEngine, sa.MetaData],
) -> None:
    engine, _meta = created
    changed = realistic_model()
    changed.tables["customer"].append_column(sa.Column("extra", sa.Integer))
    changed.tables["orders"].c.total.type = sa.Numeric(14, 2)
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff, changed)
    kinds = sorted(d[0] if isinstance(d, tuple) else d[0][0] for d in diff)
    assert kinds == ["add_column", "modify_type"]


def _migrate(conn: Connection, fn: Any) -> None:
    context = MigrationContext.configure(conn)
    fn(Operations(context))


async def test_rename_table_and_alter_identity(
    created: tuple[AsyncEngine, sa.MetaData],
) -> None:
    engine, _ = created
    async with engine.begin() as conn:
        await conn.run_sync(
            _migrate,
            lambda op: op.create_table(
                "ledger",
                sa.Column("id", sa.BigInteger, sa.Identity(start=1), primary_key=True),
                sa.Column("amount", sa.Integer),
            ),
        )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                _migrate, lambda op: op.rename_table("ledger", "journal")
            )
            await conn.run_sync(
                _migrate,
                lambda op: op.alter_column(
                    "journal",
                    "id",
                    existing_type=sa.BigInteger,
                    server_default=sa.Identity(start=100, increment=5, always=True),
                    existing_server_default=sa.Identity(start=1),
                ),
            )
        async with engine.connect() as conn:
            names, cols = await conn.run_sync(
                lambda c: (
                    inspect(c).get_table_names(),
                    inspect(c).get_columns("journal"),
                )
            )
        assert "journal" in names
        assert "ledger" not in names
        identity = {c["name"]: c for c in cols}["id"]["identity"]
        assert identity["always"] is True
        assert identity["start"] == 100
        assert identity["increment"] == 5
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DROP TABLE IF EXISTS journal")
            await conn.exec_driver_sql("DROP TABLE IF EXISTS ledger")


async def test_impl_is_registered_and_ddl_is_transactional_on_postgresql(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        impl = await conn.run_sync(lambda c: MigrationContext.configure(c).impl)
        is_crdb = conn.dialect.is_cockroachdb  # type: ignore[attr-defined]
    assert isinstance(impl, CockroachDBImpl)
    if not is_crdb:
        assert impl.transactional_ddl is True


async def test_failed_migration_rolls_back_its_ddl_on_postgresql(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.is_cockroachdb:  # type: ignore[attr-defined]
        pytest.skip(
            "needs PostgreSQL: CockroachDB commits before each DDL statement "
            "(tests/crdb_facts/session_vars.md section 7)"
        )

    def migration(op: Operations) -> None:
        op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
        op.execute("SELECT * FROM table_that_does_not_exist")

    with pytest.raises(sa.exc.ProgrammingError):
        async with engine.begin() as conn:
            await conn.run_sync(_migrate, migration)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert "half_done" not in names


@pytest.mark.crdb_only("autocommit_before_ddl")
async def test_crdb_ddl_is_transactional_only_without_autocommit_before_ddl(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SET autocommit_before_ddl = off")
        impl = await conn.run_sync(lambda c: MigrationContext.configure(c).impl)
        assert impl.transactional_ddl is True
        await conn.exec_driver_sql("SET autocommit_before_ddl = on")
        impl = await conn.run_sync(lambda c: MigrationContext.configure(c).impl)
        assert impl.transactional_ddl is False


# -- ALTER COLUMN TYPE inside the migration's transaction (CockroachDB mode) ------
#: CockroachDB's refusal, recorded: cockroach pkg/sql/alter_column_type.go
#: (AlterColTypeInTxnNotSupportedErr, unimplemented.NewWithIssuef(49351, ...),
#: hence 0A000; https://github.com/cockroachdb/cockroach/issues/49351).
ALTER_TYPE_REFUSAL = (
    "unimplemented: ALTER COLUMN TYPE is not supported inside a transaction"
)


class _RecordedRefusal(Exception):
    sqlstate = "0A000"


def _refuse_alter_type(sql: str) -> Any:
    if sql.startswith("ALTER TABLE") and " TYPE " in sql:
        raise sa.exc.NotSupportedError(sql, None, _RecordedRefusal(ALTER_TYPE_REFUSAL))
    return None


def _crdb_migration(answer: Any, **opts: Any) -> tuple[Operations, Any]:
    from tests.conformance.recording import Recorder, crdb_dialect

    class InMigration(Recorder):
        """The migration's transaction is open (transactional_ddl)."""

        def in_transaction(self) -> bool:
            return True

    recorder = InMigration(crdb_dialect("v24.3.0"), answer)
    context = MigrationContext.configure(
        connection=recorder, opts={"transactional_ddl": True, **opts}
    )
    assert isinstance(context.impl, CockroachDBImpl)
    return Operations(context), recorder


def test_alter_column_type_in_a_transaction_says_what_to_do() -> None:
    from alembic.util import CommandError

    op, _ = _crdb_migration(_refuse_alter_type)
    with pytest.raises(CommandError) as info:
        op.alter_column("accounts", "balance", type_=sa.BigInteger())
    message = str(info.value)
    assert "accounts.balance" in message
    assert "autocommit_block()" in message
    assert "autocommit_before_ddl = on" in message
    assert isinstance(info.value.__cause__, sa.exc.NotSupportedError)


def test_other_alter_column_refusals_pass_through() -> None:
    def refuse(sql: str) -> Any:
        raise sa.exc.NotSupportedError(sql, None, _RecordedRefusal("something else"))

    op, _ = _crdb_migration(refuse)
    with pytest.raises(sa.exc.NotSupportedError):
        op.alter_column("accounts", "balance", type_=sa.BigInteger())
    with pytest.raises(sa.exc.NotSupportedError):
        op.alter_column("accounts", "balance", nullable=False)


def test_alter_column_type_is_sent_as_is() -> None:
    op, recorder = _crdb_migration(lambda sql: None)
    op.alter_column("accounts", "balance", type_=sa.BigInteger())
    assert [sql.strip() for sql in recorder.statements] == [
        "ALTER TABLE accounts ALTER COLUMN balance TYPE BIGINT"
    ]
