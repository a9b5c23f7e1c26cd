"""Hooks for SQLAlchemy's test-suite provisioning (the module name is SQLAlchemy's).

SQLAlchemy's pytest plugin imports ``<dialect package>.provision`` when it
loads a dialect (``Dialect.load_provisioning``) and *swallows an ImportError*,
so a broken import here would silently leave the compliance suite without
these hooks; ``tests/unit/test_provision.py`` imports it to catch that.

SQLAlchemy dispatches the hooks by backend name, and ours is ``cockroachdb``,
so none of the ``postgresql`` hooks apply by themselves. Each hook below
delegates to SQLAlchemy's PostgreSQL hook where the servers agree, and differs
only where CockroachDB does:

- ``drop_all_schema_objects_pre_tables``: PostgreSQL rolls back stray prepared
  transactions; CockroachDB has no two-phase commit (no ``pg_prepared_xacts``
  rows to find), so nothing is done there.
- ``prepare_for_drop_tables``: the PostgreSQL check reads ``pg_stat_activity``;
  on CockroachDB it is skipped (sessions are listed in ``crdb_internal``, which
  is restricted from v26.1, tests/crdb_facts/pg_catalog_support.md section 3).
- ``post_configure_engine``: PostgreSQL gets ``citext``/``hstore`` extensions
  for SQLAlchemy's own tests; CockroachDB has no extensions to create.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import provision as _pg_provision
from sqlalchemy.testing.provision import (
    create_db,
    drop_all_schema_objects_post_tables,
    drop_all_schema_objects_pre_tables,
    drop_db,
    post_configure_engine,
    prepare_for_drop_tables,
    set_default_schema_on_connection,
    temp_table_keyword_args,
    upsert,
)

__all__: list[str] = []

# SQLAlchemy's PostgreSQL hooks must be registered before _pg() looks them up.
assert _pg_provision is not None

_BACKEND = "cockroachdb"


def _pg(hook: Any) -> Any:
    """SQLAlchemy's PostgreSQL implementation of ``hook`` (not the dispatcher)."""
    return hook.fns["postgresql"]


def _is_crdb(engine: Any) -> bool:
    return bool(getattr(engine.dialect, "is_cockroachdb", False))


@create_db.for_db(_BACKEND)
def _create_db(cfg: Any, eng: Any, ident: str) -> None:
    if _is_crdb(eng):
        # CockroachDB has no database templates; a plain CREATE DATABASE.
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {ident}")
        return
    _pg(create_db)(cfg, eng, ident)


@drop_db.for_db(_BACKEND)
def _drop_db(cfg: Any, eng: Any, ident: str) -> None:
    if _is_crdb(eng):
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {ident} CASCADE")
        return
    _pg(drop_db)(cfg, eng, ident)


@temp_table_keyword_args.for_db(_BACKEND)
def _temp_table_keyword_args(cfg: Any, eng: Any) -> dict[str, Any]:
    return {"prefixes": ["TEMPORARY"]}


@set_default_schema_on_connection.for_db(_BACKEND)
def _set_default_schema_on_connection(
    cfg: Any, dbapi_connection: Any, schema_name: str
) -> None:
    _pg(set_default_schema_on_connection)(cfg, dbapi_connection, schema_name)


@drop_all_schema_objects_pre_tables.for_db(_BACKEND)
def _drop_all_schema_objects_pre_tables(cfg: Any, eng: Any) -> None:
    if not _is_crdb(eng):
        _pg(drop_all_schema_objects_pre_tables)(cfg, eng)


@drop_all_schema_objects_post_tables.for_db(_BACKEND)
def _drop_all_schema_objects_post_tables(cfg: Any, eng: Any) -> None:
    _pg(drop_all_schema_objects_post_tables)(cfg, eng)


@prepare_for_drop_tables.for_db(_BACKEND)
def _prepare_for_drop_tables(config: Any, connection: Any) -> None:
    if not _is_crdb(connection):
        _pg(prepare_for_drop_tables)(config, connection)


@post_configure_engine.for_db(_BACKEND)
def _post_configure_engine(url: Any, engine: Any, follower_ident: Any) -> None:
    """Nothing to install: the suite's tests need no PostgreSQL extension."""


@upsert.for_db(_BACKEND)
def _upsert(cfg: Any, table: Any, returning: Any, **kw: Any) -> Any:
    return _pg(upsert)(cfg, table, returning, **kw)
