"""Identity columns of a table outside the search path reflect on CockroachDB.

SQLAlchemy's column query (2.0 and 2.1) finds an identity column's sequence
with ``pg_get_serial_sequence(CAST(CAST(attrelid AS REGCLASS) AS TEXT),
attname)``. CockroachDB before v26.3 renders ``regclass::text`` without the
schema (https://github.com/cockroachdb/cockroach/issues/170049, fixed by
https://github.com/cockroachdb/cockroach/pull/170189 in v26.3), so the lookup
failed for ``other.t``, or found the sequence of a same-named ``public.t``.
Below v26.3 the dialect passes ``quote_ident(nspname) || '.' ||
quote_ident(relname)`` instead (dialect/reflection.py ``crdb_catalog_query``).

Here: the captured column query of a v24.3 dialect (the recorded ``SELECT
version()`` of v24.3.0) has the qualified argument and passes the conformance
checker; v26.3 keeps SQLAlchemy's own; and the ``information_schema.columns``
query selects ``is_identity`` / ``identity_generation``, so recorded
CockroachDB rows (tests/crdb_facts/information_schema_columns.json
``identity_v25``) mark identity columns even where the pg_catalog lookup gave
nothing. The PostgreSQL equivalence of the rewrite is in
test_postgresql_equivalence.py.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine.reflection import ObjectKind, ObjectScope

from sqlalchemy_crdb_async.dialect import reflection
from sqlalchemy_crdb_async.dialect.server import parse_server_version
from tests import facts
from tests.conformance.checker import assert_conforms
from tests.conformance.recording import Recorder, crdb_dialect, golden_version

ORIGINAL_ARGUMENT = "CAST(CAST(pg_catalog.pg_attribute.attrelid AS REGCLASS) AS TEXT)"
QUALIFIED_ARGUMENT = "pg_get_serial_sequence((SELECT quote_ident("


def _answer_one_table(sql: str) -> list[dict[str, Any]] | None:
    if sql.startswith("SELECT pg_catalog.pg_class.oid, pg_catalog.pg_class.relname \n"):
        return [{"oid": 55, "relname": "t"}]
    return None


def _column_query(dialect: Any) -> str:
    recorder = Recorder(dialect, _answer_one_table)
    list(
        dialect.get_multi_columns(
            recorder,
            schema="other",
            filter_names=["t"],
            scope=ObjectScope.DEFAULT,
            kind=ObjectKind.ANY,
            info_cache={},
        )
    )
    (sql,) = [s for s in recorder.statements if "pg_get_serial_sequence" in s]
    return sql


def test_identity_lookup_is_schema_qualified_below_v26_3() -> None:
    sql = _column_query(crdb_dialect("v24.3.0"))
    assert ORIGINAL_ARGUMENT not in sql
    assert QUALIFIED_ARGUMENT in sql
    assert "|| '.' || quote_ident(crdb_seq_cls.relname)" in sql
    assert_conforms(sql)


def test_identity_lookup_is_left_alone_from_v26_3() -> None:
    dialect = crdb_dialect("v24.3.0")
    # v26.3's version() string, derived from the recorded v25.2.1 one
    # (tests/crdb_facts/version.json) by its release tag; server_version 18.0.0
    # (tests/crdb_facts/catalog_v26.md)
    v26_3 = golden_version("v25.2.1").replace("v25.2.1", "v26.3.0")
    dialect.server_info = parse_server_version(v26_3, "18.0.0")
    assert dialect.crdb_version == (26, 3, 0)
    sql = _column_query(dialect)
    assert ORIGINAL_ARGUMENT in sql
    assert QUALIFIED_ARGUMENT not in sql


def _identity_rows() -> list[dict[str, Any]]:
    cases = facts.load("information_schema_columns.json")["information_schema_cases"]
    record = next(r for r in cases if r["id"] == "identity_v25")
    return [
        {"table_name": "generated_as_identity", "crdb_sql_type": "INT8", **row}
        for row in record["rows"]
    ]


def _answer_selected_columns(sql: str) -> list[dict[str, Any]] | None:
    """The recorded rows, with only the columns ``sql`` selects (as a server)."""
    if "FROM information_schema.columns" not in sql:
        return None
    selected = sql.split("FROM", 1)[0]
    return [
        {k: v for k, v in row.items() if re.search(rf"\b{k}\b", selected)}
        for row in _identity_rows()
    ]


def test_recorded_identity_rows_mark_identity_columns() -> None:
    # what pg_catalog reflection gives when the identity lookup found nothing:
    # columns with a nextval() default and no identity
    default = "nextval('public.generated_as_identity_{}_seq'::REGCLASS)"
    pg_columns = [
        {"name": name, "type": None, "nullable": True, "default": None}
        if name == "a"
        else {"name": name, "type": None, "nullable": False, "default": default}
        for name in ("a", "b", "c")
    ]
    for column in pg_columns:
        if column["default"]:
            column["default"] = column["default"].format(column["name"])
    recorder = Recorder(crdb_dialect(), _answer_selected_columns)
    ((_, columns),) = reflection.crdb_columns(
        [((None, "generated_as_identity"), pg_columns)],
        recorder,
        "public",
        include_hidden=False,
    )
    by_name = {c["name"]: c for c in columns}
    assert by_name["b"]["identity"] == {"always": True}
    assert by_name["c"]["identity"] == {"always": False}
    assert by_name["b"]["default"] is None
    assert "identity" not in by_name["a"]
    (sql,) = recorder.statements
    assert_conforms(sql)
