"""The conformance checker itself: it must fail on what CockroachDB lacks.

Each known-bad statement below names a real CockroachDB gap (with its source in
tests/crdb_facts/); if the checker stopped reporting one, every "conforms"
verdict of the layer would be worthless.
"""

from __future__ import annotations

import pytest
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope

from tests.conformance.checker import index_clauses, problems
from tests.conformance.recording import crdb_dialect

BAD = [
    # absent from every CockroachDB version
    # (tests/crdb_facts/builtins.json notable_absent);
    # SQLAlchemy 2.1's column reflection called it
    (
        "SELECT pg_catalog.pg_collation_is_visible(c.oid) "
        "FROM pg_catalog.pg_collation AS c",
        "pg_collation_is_visible",
    ),
    # hidden in a correlated subquery inside CASE, as SQLAlchemy writes it
    (
        "SELECT CASE WHEN a.attcollation != 0 THEN (SELECT "
        "pg_catalog.pg_collation_is_visible(c.oid) FROM pg_catalog.pg_collation "
        "AS c WHERE c.oid = a.attcollation) END FROM pg_catalog.pg_attribute AS a",
        "pg_collation_is_visible",
    ),
    ("SELECT pg_catalog.pg_get_statisticsobjdef_columns(1)", "absent"),
    ("SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
    ("SELECT txid_current()", "txid_current"),
    # only in the newest master registry, not at v24.3
    ("SELECT pg_size_pretty(1)", "newest master"),
    ("SELECT no_such_function_anywhere(1)", "not a CockroachDB builtin"),
    # relations and columns CockroachDB's catalogue does not have
    ("SELECT * FROM pg_catalog.pg_statistic_ext_nope", "pg_statistic_ext_nope"),
    ("SELECT c.relnope FROM pg_catalog.pg_class AS c", "relnope"),
    ("SELECT pg_catalog.pg_class.relnope FROM pg_catalog.pg_class", "relnope"),
    ("SELECT relnope FROM pg_class", "relnope"),
    (
        "SELECT x.attname, (SELECT x.relnope) FROM pg_catalog.pg_class AS x",
        "relnope",
    ),
    ("SELECT c.crdb_nope FROM information_schema.columns AS c", "crdb_nope"),
    # clause order (tests/crdb_facts/grammar.md s.1): WITH after STORING; a
    # syntax error on CockroachDB, which the old compiler emitted (issue:
    # hash-sharded order)
    (
        "CREATE INDEX ix ON t (a) USING HASH WITH (bucket_count=8) STORING (b)",
        "clause order",
    ),
    ("CREATE INDEX ix ON t (a) WHERE a > 0 STORING (b)", "clause order"),
    ("CREATE INDEX ix ON t (a) NOT VISIBLE USING HASH", "clause order"),
    (
        "CREATE TABLE t (a INT8, INDEX ix (a) WITH (bucket_count=4) USING HASH)",
        "clause order",
    ),
    # inverted indexes: no STORING, hash sharding or UNIQUE (create_index.go)
    ("CREATE INVERTED INDEX ix ON t (j) STORING (b)", "inverted index with STORING"),
    ("CREATE UNIQUE INVERTED INDEX ix ON t (j)", "inverted index with UNIQUE"),
    ("CREATE INVERTED INDEX ix ON t (j) USING HASH", "inverted index with USING HASH"),
    ("CREATE TABLE t (j JSONB, INVERTED INDEX ix (j) STORING (b))", "STORING"),
    # the visibility ends the definition (sql.y opt_index_visible)
    ("CREATE INDEX ix ON t (a) NOT VISIBLE WHERE a > 0", "clause order"),
    ("CREATE TABLE t (a INT8, INDEX ix (a) VISIBILITY 0.5 WHERE a > 0)", "order"),
    # vector indexes: no STORING, hash sharding or UNIQUE (idxtype.go)
    ("CREATE VECTOR INDEX ix ON t (v) STORING (b)", "vector index with STORING"),
    ("CREATE UNIQUE VECTOR INDEX ix ON t (v)", "vector index with UNIQUE"),
    # operator classes: last column of an inverted or vector index only
    ("CREATE INDEX ix ON t (c gin_trgm_ops)", "operator class gin_trgm_ops"),
    ("CREATE INVERTED INDEX ix ON t (c gin_trgm_ops, a)", "non-last column"),
    ("SELECT a FROM t WHERE a = 1 AS OF SYSTEM TIME '-1s'", "AS OF SYSTEM TIME"),
    ("SELECT a FROM t AS OF SYSTEM TIME '-1s' AS OF", "AS OF SYSTEM TIME"),
    ("SELECT FROM WHERE", "syntax"),
]

GOOD = [
    "SELECT version(), current_setting('server_version')",
    "SELECT c.relname, c.relam FROM pg_catalog.pg_class AS c "
    "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace",
    "SELECT table_name, crdb_sql_type, is_hidden FROM information_schema.columns",
    "SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef AS d",
    "SELECT pg_catalog.pg_get_constraintdef(c.oid, true) "
    "FROM pg_catalog.pg_constraint AS c",
    "SELECT n.nspname = ANY (current_schemas(true)) FROM pg_catalog.pg_namespace AS n",
    "CREATE INDEX ix ON t (a) USING HASH STORING (b) WITH (bucket_count=8) WHERE a > 0",
    "CREATE UNIQUE INDEX ix ON t (a DESC) STORING (b) NOT VISIBLE",
    "CREATE INDEX ix ON t (a) VISIBILITY 0.5",
    "CREATE INVERTED INDEX ix ON t (j)",
    "CREATE INVERTED INDEX ix ON t (j) WHERE a > 0",
    "CREATE INVERTED INDEX ix ON t (a, c gin_trgm_ops) WHERE a > 0 NOT VISIBLE",
    "CREATE VECTOR INDEX ix ON t (k, v vector_l2_ops) WHERE k > 0 VISIBILITY 0.25",
    "CREATE TABLE t (k INT8, v VECTOR(3), VECTOR INDEX ix (k, v) NOT VISIBLE)",
    "RESET ROLE",
    "CREATE TABLE t (a INT8 NOT NULL, b INT8 AS (a + 1) STORED, "
    "c INT8 AS (a * 2) VIRTUAL, PRIMARY KEY (a), "
    "INDEX t_b_idx (b) USING HASH STORING (c) WITH (bucket_count=4), "
    "UNIQUE INDEX t_c_key (c), INVERTED INDEX t_j_idx (j))",
    "SELECT t.a FROM t AS OF SYSTEM TIME '-10s' WHERE t.a = 1",
    "SELECT t.a FROM t AS OF SYSTEM TIME follower_read_timestamp()",
    "BEGIN AS OF SYSTEM TIME '-5s'",
    "SET TRANSACTION AS OF SYSTEM TIME follower_read_timestamp()",
    "UPSERT INTO t (a, b) VALUES ($1, $2)",
    "SELECT a FROM t@{FORCE_INDEX=t_b_idx} AS x",
    "SAVEPOINT cockroach_restart",
    "SELECT relname AS name FROM pg_catalog.pg_class ORDER BY name",
    "DROP DATABASE IF EXISTS d CASCADE",
]


@pytest.mark.parametrize(("sql", "expected"), BAD)
def test_the_layer_fails_what_cockroachdb_lacks(sql: str, expected: str) -> None:
    found = problems(sql)
    assert found, f"the checker let through {sql!r}"
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("sql", GOOD)
def test_the_layer_passes_what_cockroachdb_accepts(sql: str) -> None:
    assert problems(sql) == []


def test_index_clauses_in_written_order() -> None:
    tail = " USING HASH STORING (b, c) WITH (bucket_count=8) WHERE (a > 0) NOT VISIBLE"
    assert [kind for kind, _ in index_clauses(tail)] == [
        "USING HASH",
        "STORING",
        "WITH",
        "WHERE",
        "VISIBILITY",
    ]


def test_unknown_index_clause_is_reported() -> None:
    assert any(
        "unknown index clause" in p for p in problems("CREATE INDEX i ON t (a) BOGUS")
    )


def test_the_layer_catches_sqlalchemy_column_query_unpatched() -> None:
    """SQLAlchemy's own column query, without this dialect's rewrite: on 2.1
    it calls pg_collation_is_visible and must fail; on 2.0 it conforms."""
    dialect = crdb_dialect()
    query = PGDialect._columns_query(
        dialect, None, False, ObjectScope.DEFAULT, ObjectKind.TABLE
    )
    sql = str(query.compile(dialect=dialect))
    found = problems(sql)
    if "pg_collation_is_visible" in sql:  # SQLAlchemy 2.1
        assert any("pg_collation_is_visible" in p for p in found), found
    else:  # SQLAlchemy 2.0: pg_attrdef / pg_sequence subqueries, json_build_object
        assert "json_build_object" in sql
        assert found == []
