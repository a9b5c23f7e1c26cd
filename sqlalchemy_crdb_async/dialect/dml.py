"""UPSERT: CockroachDB's insert-or-replace, with an exact PostgreSQL equivalent.

UPSERT (https://www.cockroachlabs.com/docs/v23.2/upsert)::

    from sqlalchemy_crdb_async import upsert

    await conn.execute(upsert(accounts).values(id=1, balance=100))
    # CockroachDB:  UPSERT INTO accounts (id, balance) VALUES ($1, $2)
    # PostgreSQL:   INSERT INTO accounts (id, balance) VALUES ($1, $2)
    #               ON CONFLICT (id) DO UPDATE SET balance = excluded.balance

``UPSERT`` always uses the primary key as the arbiter and updates only the
columns given, which is what the PostgreSQL form spells out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc
from sqlalchemy.dialects.postgresql import Insert as PGInsert
from sqlalchemy.dialects.postgresql.dml import OnConflictDoNothing, OnConflictDoUpdate
from sqlalchemy.ext.compiler import compiles

from ._compiling import DIALECT_NAME, is_crdb

__all__ = ["Upsert", "upsert"]


# -- UPSERT --------------------------------------------------------------------


class Upsert(PGInsert):
    """``UPSERT INTO`` on CockroachDB; ``INSERT ... ON CONFLICT (pk) DO UPDATE``
    on PostgreSQL. Made by :func:`upsert`."""

    inherit_cache = True


def upsert(table: Any) -> Upsert:
    """An UPSERT into ``table`` (a Table or mapped class); use like ``insert()``.

    Accepts what ``insert()`` accepts, then ``.values(...)`` and
    ``.returning(...)``. On CockroachDB it renders ``UPSERT INTO``, which uses
    the primary key as the arbiter; on PostgreSQL
    ``INSERT ... ON CONFLICT (<primary key>) DO UPDATE`` of the given columns,
    the same meaning. It is a statement, so it retries nothing (run it in
    :func:`.run_transaction` for that). Raises ``CompileError`` if the table
    has no primary key, or if ``on_conflict_*`` is added (UPSERT has its own).

    Example::

        from sqlalchemy_crdb_async import upsert

        async with engine.begin() as conn:
            await conn.execute(upsert(accounts).values(id=1, balance=100))
            await conn.execute(upsert(accounts).values(id=1, balance=90))
    """
    return Upsert(table)


@compiles(Upsert, DIALECT_NAME)
@compiles(Upsert, "postgresql")
def _compile_upsert(element: Upsert, compiler: Any, **kw: Any) -> str:
    if element._post_values_clause is not None:
        raise exc.CompileError(
            "upsert() takes no on_conflict_* clause: UPSERT always resolves "
            "conflicts on the primary key. Use postgresql insert() for others."
        )
    table = element.table
    pk = list(table.primary_key) if hasattr(table, "primary_key") else []
    if not pk:
        raise exc.CompileError(
            f"upsert() into {table.name!r}: the table has no primary key, and "
            "UPSERT resolves conflicts on the primary key."
        )
    if is_crdb(compiler):
        if element._independent_ctes or getattr(compiler, "ctes", None):
            raise exc.CompileError("upsert() does not support CTEs on CockroachDB")
        sql = str(compiler.visit_insert(element, **kw))
        if not sql.startswith("INSERT INTO"):
            raise exc.CompileError(f"cannot turn into UPSERT: {sql[:60]!r}")
        return "UPSERT" + sql[len("INSERT") :]
    # PostgreSQL: the same meaning, spelled with ON CONFLICT on the primary key
    pk_keys = {c.key for c in pk}
    keys = _inserted_keys(element, compiler) or [c.key for c in table.columns]
    updates = [k for k in keys if k not in pk_keys and k in table.columns]
    twin = PGInsert.__new__(PGInsert)
    twin.__dict__.update(element.__dict__)
    if updates:
        excluded = element.excluded
        twin._post_values_clause = OnConflictDoUpdate(
            index_elements=pk, set_={k: excluded[k] for k in updates}
        )
    else:
        twin._post_values_clause = OnConflictDoNothing(index_elements=pk)
    return str(compiler.visit_insert(twin, **kw))


def _inserted_keys(element: Upsert, compiler: Any) -> list[str]:
    if element._multi_values:
        return [c if isinstance(c, str) else c.key for c in element._multi_values[0][0]]
    if element._values:
        return [c if isinstance(c, str) else c.key for c in element._values]
    if element.select is not None and element._select_names:
        return [c if isinstance(c, str) else c.key for c in element._select_names]
    return list(compiler.column_keys or [])
