"""The checker's own cases: statements CockroachDB accepts and ones it refuses.

Written from CockroachDB's grammar and sources, each naming where the verdict
comes from (abbreviations as in :mod:`tests.conformance._rules_kinds`: BNF =
cockroach ``docs/generated/sql/bnf/stmt_block.bnf``, SQLY = cockroach
``pkg/sql/parser/sql.y``, TYPES = ``pkg/sql/types/types.go``). A refused case
names a fragment the problem must contain, so a refusal for another reason does
not count.
"""

from __future__ import annotations

import pytest

from sqlalchemy_crdb_async.pool._reset import SessionReset
from tests.conformance.checker import WINDOW, problems, transaction_problems

BNF = "BNF"
SQLY = "SQLY"

#: (statement, source) that CockroachDB accepts.
ACCEPTED: list[tuple[str, str]] = [
    ("CREATE TABLE t (a INT8, b STRING, INDEX (b))", f"{BNF} index_def: name optional"),
    ("CREATE TABLE t (a INT8, INDEX t_a_idx (a) STORING (a))", f"{BNF} index_def"),
    ("CREATE TABLE t (a INT8, UNIQUE INDEX (a))", f"{BNF} index_def"),
    (
        "SELECT * FROM [SHOW TABLES]",
        f"{BNF} table_ref '[' row_source_extension_stmt ']'",
    ),
    ("SELECT t.table_name FROM [SHOW TABLES] AS t", f"{BNF} table_ref"),
    ("SELECT * FROM [SHOW CREATE TABLE t]", f"{BNF} show_create_stmt in table_ref"),
    ("SELECT id FROM [INSERT INTO t (a) VALUES (1) RETURNING id]", f"{BNF} table_ref"),
    ("ALTER TABLE t ALTER PRIMARY KEY USING COLUMNS (a, b)", f"{BNF} alter_table_cmd"),
    (
        "ALTER TABLE t ALTER PRIMARY KEY USING COLUMNS (a) USING HASH "
        "WITH (bucket_count = 8)",
        f"{BNF} alter_table_cmd opt_hash_sharded",
    ),
    ("CREATE TABLE t (a INT8 PRIMARY KEY USING HASH)", f"{BNF} col_qualification_elem"),
    (
        "CREATE TABLE t (a INT8 PRIMARY KEY USING HASH WITH (bucket_count = 4))",
        f"{BNF} col_qualification_elem",
    ),
    (
        "CREATE TABLE t (a INT8, b INT8, PRIMARY KEY (a, b) USING HASH)",
        f"{BNF} constraint_elem PRIMARY KEY ... opt_hash_sharded",
    ),
    (
        "SELECT a FROM t AS OF SYSTEM TIME '-1s' ORDER BY a FETCH FIRST 5 ROWS ONLY",
        f"{BNF} from_clause ... opt_as_of_clause, then select_limit",
    ),
    ("SELECT a FROM t AS OF SYSTEM TIME '-1s' LIMIT 3", f"{BNF} select_limit"),
    ("SELECT a FROM t AS OF SYSTEM TIME '-1s' OFFSET 2", f"{BNF} offset_clause"),
    (
        "SELECT a FROM t AS OF SYSTEM TIME follower_read_timestamp() WHERE a > 1",
        f"{BNF} from_clause; tests/crdb_facts/grammar.md section 7",
    ),
    (
        "SELECT (SELECT b FROM u AS OF SYSTEM TIME '-5s' LIMIT 1) "
        "FROM t AS OF SYSTEM TIME '-5s'",
        "optbuilder validateAsOf: the same timestamp as the top level",
    ),
    ("BEGIN AS OF SYSTEM TIME '-5s'", f"{BNF} transaction_mode as_of_clause"),
    ("BEGIN AS OF SYSTEM TIME '-5s', PRIORITY HIGH", f"{BNF} transaction_mode_list"),
    ("BEGIN READ ONLY, AS OF SYSTEM TIME '-5s'", f"{BNF} transaction_mode_list"),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION AS OF SYSTEM TIME "
        "follower_read_timestamp()",
        f"{BNF} set_session_stmt; tests/crdb_facts/grammar.md section 7",
    ),
    ("SET TRANSACTION AS OF SYSTEM TIME '-5s'", f"{BNF} transaction_mode"),
    ("SELECT a FROM t FOR UPDATE", f"{BNF} for_locking_clause"),
    ("SELECT a FROM t FOR SHARE SKIP LOCKED", f"{BNF} for_locking_item"),
    (
        "CREATE TEMP TABLE t (a INT8) ON COMMIT PRESERVE ROWS",
        f"{SQLY} opt_create_table_on_commit",
    ),
    ("CREATE UNLOGGED TABLE t (a INT8)", f"{BNF} opt_persistence_temp_table"),
    ("DISCARD ALL", f"{BNF} discard_stmt"),
    ("DISCARD SEQUENCES", f"{BNF} discard_stmt"),
    ("DISCARD TEMP", f"{BNF} discard_stmt"),
    ("ANALYZE t", f"{BNF} analyze_stmt"),
    ("UNLISTEN *", f"{BNF} unlisten_stmt"),
    ("TRUNCATE t CASCADE", f"{BNF} truncate_stmt opt_drop_behavior"),
    ("COPY t FROM STDIN", f"{BNF} copy_stmt"),
    ("COPY t TO STDOUT", f"{BNF} copy_stmt"),
    (
        "SELECT tableoid, crdb_internal_mvcc_timestamp FROM t",
        "colinfo/system_columns.go",
    ),
    (
        "SELECT to_tsvector('english', b) FROM t",
        "tests/crdb_facts/builtins.json: documented from v23.1",
    ),
    (
        "CREATE TABLE t (a TSVECTOR, b INET, c JSONB, d UUID)",
        "TYPES: tsvector since v23.1",
    ),
    ("SELECT '1.2.3.4'::INET", "TYPES: inet is a CockroachDB type"),
    ("CREATE TYPE e AS ENUM ('a', 'b')", f"{BNF} create_type_stmt"),
    ("CREATE TYPE c AS (x INT8, y STRING)", f"{BNF} create_type_stmt composite"),
    ("CREATE INDEX i ON t USING GIN (j)", f"{BNF} opt_index_access_method"),
    ("CREATE TABLE t2 AS SELECT a FROM t", f"{BNF} create_table_as_stmt"),
    ("CREATE MATERIALIZED VIEW v AS SELECT a FROM t WITH DATA", f"{BNF} opt_with_data"),
    ("COMMENT ON COLUMN t.a IS 'x'", f"{BNF} comment_stmt"),
    ("COMMENT ON CONSTRAINT c ON t IS 'x'", f"{BNF} comment_stmt"),
    ("BEGIN NOT DEFERRABLE", f"{BNF} transaction_deferrable_mode"),
    ("CREATE GLOBAL TEMPORARY TABLE t (a INT8)", f"{BNF} opt_persistence_temp_table"),
    (
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
        f"{BNF} alter_table_cmd",
    ),
    ("ALTER TABLE t VALIDATE CONSTRAINT c", f"{BNF} alter_table_cmd"),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", f"{BNF} alter_table_cmd"),
    ("ALTER TABLE t ALTER COLUMN a TYPE INT4", f"{BNF} alter_table_cmd"),
    ("ALTER TABLE t ADD COLUMN b INT8 DEFAULT 0", f"{BNF} alter_table_cmd"),
    ("ALTER TABLE t RENAME COLUMN a TO b", f"{BNF} alter_table_cmd"),
    ("ALTER TABLE t OWNER TO alice", f"{BNF} alter_table_owner_stmt"),
    (
        "ALTER TABLE t SET (ttl_expire_after = '1 day')",
        f"{BNF} alter_table_cmd SET (...)",
    ),
    (
        "CREATE TABLE c (a INT8 REFERENCES p (a) MATCH FULL ON DELETE CASCADE)",
        f"{BNF} key_match reference_actions",
    ),
    ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING", f"{BNF} on_conflict"),
    ("UPSERT INTO t (a, b) VALUES (1, 2)", f"{BNF} upsert_stmt"),
    ("DELETE FROM t USING u WHERE t.a = u.a", f"{BNF} opt_using_clause"),
    ("CREATE MATERIALIZED VIEW v AS SELECT a FROM t", f"{BNF} create_view_stmt"),
    ("DECLARE c CURSOR FOR SELECT a FROM t", f"{BNF} declare_cursor_stmt"),
    (
        "SELECT relname FROM pg_class AS c "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace",
        "tests/crdb_facts/catalog_tables.json: relname only in pg_class",
    ),
    (
        "SELECT indexdef FROM pg_indexes",
        "tests/crdb_facts/catalog_tables.json pg_indexes",
    ),
    (
        "SELECT table_name FROM information_schema.tables "
        "JOIN information_schema.columns USING (table_name)",
        "USING merges the column: not ambiguous",
    ),
    (
        "SELECT crdb_oid FROM pg_indexes",
        "tests/crdb_facts/catalog_tables.json pg_indexes.crdb_oid",
    ),
    # CockroachDB's own forms PostgreSQL's parser cannot read (_crdb_syntax.py)
    (
        "CREATE TABLE t (a INT8) PARTITION BY LIST (a) "
        "(PARTITION p1 VALUES IN (1), PARTITION p2 VALUES IN (DEFAULT))",
        f"{BNF} partition_by_table",
    ),
    ("CREATE TABLE t (a INT8) LOCALITY REGIONAL BY ROW", f"{BNF} opt_locality"),
    ("CREATE TABLE t (a INT8, u TIMESTAMPTZ ON UPDATE now())", f"{BNF} ON UPDATE"),
    (
        "CREATE TABLE t (a INT8 NOT VISIBLE, b INT8 FAMILY f1, "
        "c INT8 CREATE FAMILY f2)",
        f"{BNF} col_qualification",
    ),
    ("SELECT * FROM a INNER HASH JOIN b ON a.x = b.x", f"{BNF} opt_join_hint"),
    ("SELECT * FROM a LEFT LOOKUP JOIN b ON a.x = b.x", f"{BNF} opt_join_hint"),
    ("SELECT 1:::INT8", f"{BNF} a_expr TYPEANNOTATE"),
    ("BEGIN PRIORITY HIGH", f"{BNF} transaction_user_priority"),
    ("SET TRANSACTION PRIORITY LOW", f"{BNF} transaction_user_priority"),
    ("SHOW CREATE TABLE t", f"{BNF} show_create_stmt"),
    ("SHOW RANGES FROM TABLE t", f"{BNF} show_ranges_stmt"),
    ("SET CLUSTER SETTING sql.txn.read_committed_isolation.enabled = true", f"{BNF}"),
    ("ALTER TABLE t CONFIGURE ZONE USING num_replicas = 3", f"{BNF} set_zone_config"),
    ("ALTER TABLE t SPLIT AT VALUES (5)", f"{BNF} alter_split_stmt"),
    ("ALTER INDEX t@t_a_idx NOT VISIBLE", f"{BNF} alter_index_visible_stmt"),
    ("ALTER TABLE t ALTER COLUMN a SET NOT VISIBLE", f"{BNF} alter_column_visible"),
    ("ALTER TABLE t SET LOCALITY GLOBAL", f"{BNF} alter_table_locality_stmt"),
    ("CREATE CHANGEFEED FOR t INTO 'kafka://k'", f"{BNF} create_changefeed_stmt"),
    ("CANCEL QUERY '1'", f"{BNF} cancel_queries_stmt"),
    ("EXPLAIN ANALYZE (DISTSQL) SELECT 1", f"{BNF} explain_stmt"),
    ("SELECT * FROM t@{NO_FULL_SCAN} WHERE a = 1", f"{BNF} opt_index_flags"),
    (
        "SELECT crdb_internal.force_retry('1s')",
        "tests/crdb_facts/builtins.json: master and v23.1 docs",
    ),
    (
        "SELECT a FROM t AS OF SYSTEM TIME INTERVAL '-1s' LIMIT 1",
        f"{BNF} as_of_clause a_expr",
    ),
    ("SELECT a FROM t AS OF SYSTEM TIME '-1s'::INTERVAL", f"{BNF} as_of_clause"),
    # keywords inside literals, names and comments are not syntax
    ("INSERT INTO t (s) VALUES ('AS OF SYSTEM TIME x')", "a string literal"),
    ("SELECT 'FROM [x]; DISCARD PLANS' AS s", "a string literal"),
    ("SELECT $$a; VACUUM$$", "a dollar-quoted string"),
    ("SELECT a FROM t -- FROM [x] TABLESAMPLE\n WHERE a = 1", "a comment"),
    (
        SessionReset().statements(True),
        "pool reset, sent as one message (pool/_reset.py)",
    ),
    (
        f"ROLLBACK; {SessionReset().statements(True)}",
        "pool reset with the closing ROLLBACK, one message (pool/_reset.py)",
    ),
]

#: (statement, fragment of the problem, source) that CockroachDB refuses.
REFUSED: list[tuple[str, str, str]] = [
    ("CREATE TABLE c (b INT8) INHERITS (p)", "INHERITS", f"{SQLY} INHERITS error"),
    ("ALTER TABLE c INHERIT p", "AddInherit", f"{SQLY} alter_table_cmd INHERITS error"),
    ("ALTER DOMAIN d SET DEFAULT 0", "ALTER DOMAIN", f"{SQLY} alter_unsupported_stmt"),
    (
        "CREATE TABLESPACE s LOCATION '/x'",
        "CREATE TABLESPACE",
        f"{SQLY} create_unsupported",
    ),
    ("CREATE TABLE t (a INT8) TABLESPACE s", "TABLESPACE", f"{BNF} create_table_stmt"),
    ("CREATE INDEX i ON t (a) TABLESPACE s", "TABLESPACE", f"{BNF} create_index_stmt"),
    ("ALTER TABLE t SET TABLESPACE s", "SetTableSpace", f"{BNF} alter_table_cmd"),
    ("SELECT * FROM t TABLESAMPLE SYSTEM (10)", "TABLESAMPLE", f"{BNF} table_ref"),
    (
        "SELECT * FROM t TABLESAMPLE BERNOULLI (5) REPEATABLE (1)",
        "TABLESAMPLE",
        f"{BNF} table_ref",
    ),
    (
        "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET b = s.b",
        "MERGE",
        f"{BNF}: no merge statement at any release of the window",
    ),
    (
        "CREATE TABLE t (a INT8, EXCLUDE USING gist (a WITH =))",
        "EXCLUDE",
        f"{BNF} constraint_elem; cockroach issue #46657",
    ),
    (
        "ALTER TABLE t ADD CONSTRAINT x EXCLUDE (a WITH =)",
        "EXCLUDE",
        f"{BNF} constraint_elem",
    ),
    (
        "CREATE TEMP TABLE t (a INT8) ON COMMIT DROP",
        "ON COMMIT",
        f"{SQLY} ON COMMIT DROP error",
    ),
    (
        "CREATE TEMP TABLE t (a INT8) ON COMMIT DELETE ROWS",
        "ON COMMIT",
        f"{SQLY} ON COMMIT DELETE ROWS error",
    ),
    ("VACUUM t", "VACUUM", f"{BNF}: no vacuum statement"),
    ("VACUUM FULL ANALYZE t", "VACUUM", f"{BNF}"),
    ("DISCARD PLANS", "DISCARD PLANS", f"{SQLY} unimplemented 'discard plans'"),
    ("CREATE TABLE t (a INT8) USING heap", "access method", f"{BNF} create_table_stmt"),
    (
        "CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)",
        "PARTITION OF",
        f"{BNF} create_table_stmt",
    ),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK TABLE", f"{BNF}"),
    ("NOTIFY ch, 'x'", "NOTIFY", "cockroach issue #41522"),
    ("LISTEN ch", "LISTEN", "cockroach issue #41522"),
    ("CLUSTER t USING t_pkey", "CLUSTER", f"{BNF}"),
    ("CHECKPOINT", "CHECKPOINT", f"{BNF}"),
    ("REINDEX TABLE t", "REINDEX", f"{SQLY}"),
    ("SET CONSTRAINTS ALL DEFERRED", "SET CONSTRAINTS", f"{BNF}"),
    ("CREATE TYPE r AS RANGE (subtype = int8)", "RANGE", f"{BNF} create_type_stmt"),
    (
        "CREATE AGGREGATE a (int8) (sfunc = int8pl, stype = int8)",
        "AGGREGATE",
        f"{SQLY}",
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO NOTHING",
        "RULE",
        f"{SQLY} create_unsupported",
    ),
    ("CREATE FOREIGN TABLE f (a INT8) SERVER s", "FOREIGN TABLE", f"{SQLY}"),
    ("CREATE PUBLICATION p FOR ALL TABLES", "PUBLICATION", f"{SQLY}"),
    ("TRUNCATE t RESTART IDENTITY", "RESTART IDENTITY", f"{BNF} truncate_stmt"),
    ("COPY t FROM '/tmp/t.csv'", "server file", f"{BNF} copy_stmt"),
    (
        "CREATE TABLE c (a INT8 REFERENCES p (a) DEFERRABLE INITIALLY DEFERRED)",
        "DEFERRABLE",
        f"{BNF} constraint_elem",
    ),
    (
        "CREATE TABLE c (a INT8 REFERENCES p (a) MATCH PARTIAL)",
        "MATCH PARTIAL",
        f"{BNF} key_match",
    ),
    (
        "CREATE TABLE t (a INT8, UNIQUE NULLS NOT DISTINCT (a))",
        "NULLS NOT DISTINCT",
        f"{BNF}",
    ),
    (
        "CREATE VIEW v AS SELECT a FROM t WITH CHECK OPTION",
        "CHECK OPTION",
        f"{BNF} create_view_stmt",
    ),
    ("CREATE TABLE t (m MONEY)", "type money", "TYPES"),
    ("SELECT '<a/>'::XML", "type xml", "TYPES"),
    ("CREATE TABLE t (c CIDR)", "type cidr", "TYPES #18846"),
    ("CREATE TABLE t (m MACADDR)", "type macaddr", "TYPES"),
    ("CREATE TABLE t (p POINT)", "type point", "TYPES #21286"),
    ("CREATE TABLE t (r INT4RANGE)", "type int4range", "no range types"),
    ("SELECT '[1,2)'::TSTZRANGE", "type tstzrange", "no range types"),
    ("SELECT ctid FROM t", "system column ctid", "colinfo/system_columns.go"),
    ("SELECT xmin, a FROM t", "system column xmin", "colinfo/system_columns.go"),
    (
        "SELECT * FROM (SELECT a FROM t AS OF SYSTEM TIME '-1s') AS s",
        "top-level",
        "optbuilder validateAsOf",
    ),
    (
        "WITH x AS (SELECT a FROM t AS OF SYSTEM TIME '-1s') SELECT * FROM x",
        "top-level",
        "optbuilder validateAsOf",
    ),
    (
        "SELECT a FROM t AS OF SYSTEM TIME '-1s' UNION SELECT a FROM u",
        "UNION",
        "optbuilder validateAsOf",
    ),
    (
        "INSERT INTO u SELECT a FROM t AS OF SYSTEM TIME '-1s'",
        "INSERT",
        "optbuilder validateAsOf",
    ),
    (
        "SELECT (SELECT b FROM u AS OF SYSTEM TIME '-9s') "
        "FROM t AS OF SYSTEM TIME '-5s'",
        "different timestamps",
        "optbuilder validateAsOf",
    ),
    (
        "SELECT a FROM t AS OF SYSTEM TIME '-1s' FOR UPDATE",
        "read-only",
        "tests/crdb_facts/errors_more.json as_of_system_time",
    ),
    (
        "SELECT a FROM t AS OF SYSTEM TIME '-1s' FOR SHARE",
        "read-only",
        "tests/crdb_facts/errors_more.json",
    ),
    (
        "SELECT a FROM t WHERE a = 1 AS OF SYSTEM TIME '-1s'",
        "must end the FROM list",
        "tests/crdb_facts/grammar.md s.7",
    ),
    (
        "SELECT oid FROM pg_class, pg_namespace",
        "ambiguous",
        "tests/crdb_facts/catalog_tables.json: both have oid",
    ),
    (
        "SELECT crdb_oid FROM pg_indexes AS i JOIN pg_index AS x ON true "
        "JOIN pg_indexes AS j ON true",
        "ambiguous",
        "tests/crdb_facts/catalog_tables.json: crdb_oid, twice in scope",
    ),
    (
        "SELECT relnope FROM pg_class AS c JOIN pg_namespace AS n ON true",
        "none of",
        "tests/crdb_facts/catalog_tables.json",
    ),
    (
        "CREATE TABLE t (a INT8) PARTITION BY RANGE (a)",
        "declarative partitioning",
        f"{BNF} partition_by_inner: partitions inline",
    ),
    ("CREATE TABLE t (a INT8) PARTITION BY HASH (a)", "partitioning", f"{BNF}"),
    (
        "CREATE TABLE c (a INT8, FOREIGN KEY (a) REFERENCES p (a) NOT DEFERRABLE)",
        "NOT DEFERRABLE",
        f"{BNF}: no constraint timing",
    ),
    ("CREATE MATERIALIZED VIEW v AS SELECT 1 WITH NO DATA", "NO DATA", f"{BNF}"),
    ("CREATE TABLE t2 AS SELECT a FROM t WITH NO DATA", "NO DATA", f"{BNF}"),
    ("CREATE SCHEMA s CREATE TABLE t (a INT8)", "schema elements", f"{BNF}"),
    ("CREATE VIEW v WITH (security_barrier) AS SELECT 1", "WITH (options)", f"{BNF}"),
    ("CREATE RECURSIVE VIEW v (n) AS SELECT 1", "RECURSIVE VIEW", f"{BNF}"),
    ("COMMENT ON FUNCTION f() IS 'x'", "COMMENT ON FUNCTION", f"{BNF} comment_stmt"),
    ("CREATE INDEX i ON t USING hash (a)", "access method hash", "docs create-index"),
    ("CREATE INDEX i ON t USING ivfflat (v)", "ivfflat", "docs create-index"),
    ("CREATE INDEX i ON t USING brin (a)", "brin", "docs create-index"),
    ("ALTER TABLE t ALTER CONSTRAINT c DEFERRABLE", "AlterConstraint", f"{SQLY}"),
    (
        "ALTER TABLE p ATTACH PARTITION p1 FOR VALUES IN (1)",
        "AttachPartition",
        f"{BNF} alter_table_cmd",
    ),
    (
        "SELECT table_name FROM information_schema.tables "
        "JOIN information_schema.columns ON true",
        "ambiguous",
        "tests/crdb_facts/catalog_tables.json: both have table_name",
    ),
    (
        "SELECT pg_advisory_lock(1)",
        "pg_advisory_lock",
        "tests/crdb_facts/builtins.json notable_absent",
    ),
    (
        "SELECT * FROM [SHOW TABLES] AS s, [SELECT ctid FROM t]",
        "ctid",
        "row source checked too",
    ),
    (
        "DISCARD ALL; SELECT 1",
        "DISCARD ALL",
        "pkg/sql/discard.go (implicit transaction)",
    ),
    (
        "SELECT a FROM t AS OF SYSTEM TIME '-1s'; "
        "SELECT b FROM u AS OF SYSTEM TIME '-2s'",
        "different timestamps",
        "one implicit transaction, tests/crdb_facts/grammar.md s.7",
    ),
]

#: (statement, fragment, release refused at, release accepted at)
BY_RELEASE: list[tuple[str, str, str, str]] = [
    # PostgreSQL-18 catalogue at v26.3 (tests/crdb_facts/catalog_v26.md s.2)
    (
        "SELECT c.relallfrozen FROM pg_catalog.pg_class AS c",
        "relallfrozen",
        "v24.3",
        "v26.3",
    ),
    (
        "SELECT c.conenforced FROM pg_catalog.pg_constraint AS c",
        "conenforced",
        "v26.2",
        "v26.3",
    ),
    (
        "SELECT d.datlastsysoid FROM pg_catalog.pg_database AS d",
        "datlastsysoid",
        "v26.3",
        "v24.3",
    ),
    ("SELECT * FROM pg_catalog.pg_stat_io", "pg_stat_io", "v25.4", "v26.3"),
    # domains: cockroach PR #165187, docs v26.3/create-domain
    ("CREATE DOMAIN d AS INT8 CHECK (VALUE > 0)", "CREATE DOMAIN", "v26.2", "v26.3"),
    ("DROP DOMAIN d", "DROP DOMAIN", "v24.3", "v26.3"),
    # jsonpath: INFERRED from v25.2 (tests/crdb_facts/builtins.json jsonb_path_query)
    ("SELECT '$.a'::JSONPATH", "jsonpath", "v24.3", "v25.2"),
    ("SELECT jsonb_path_query('{}', '$.a')", "jsonb_path_query", "v24.3", "v25.2"),
]

#: (statements sent one by one on one session, fragment, source)
SEQUENCES: list[tuple[list[str], str, str]] = [
    (
        ["BEGIN READ ONLY", "SELECT a FROM t FOR UPDATE", "COMMIT"],
        "read-only",
        "tests/crdb_facts/errors_more.json",
    ),
    (
        ["BEGIN AS OF SYSTEM TIME '-5s'", "UPDATE t SET a = 1", "COMMIT"],
        "read-only",
        "tests/crdb_facts/errors_more.json",
    ),
    (
        ["BEGIN", "SET TRANSACTION READ ONLY", "DELETE FROM t"],
        "read-only",
        "tests/crdb_facts/errors_more.json",
    ),
    (
        ["SET default_transaction_read_only = on", "INSERT INTO t VALUES (1)"],
        "read-only",
        "session default",
    ),
    (
        ["BEGIN", "SELECT a FROM t AS OF SYSTEM TIME '-5s'"],
        "inconsistent",
        "tests/crdb_facts/errors_more.json",
    ),
    (
        ["BEGIN", "SELECT 1", "SAVEPOINT cockroach_restart"],
        "first statement",
        "tests/crdb_facts/errors_more.json",
    ),
    (["BEGIN", "DISCARD ALL"], "DISCARD ALL", "pkg/sql/discard.go"),
    (
        [
            "SET SESSION CHARACTERISTICS AS TRANSACTION AS OF SYSTEM TIME "
            "follower_read_timestamp()",
            "UPDATE t SET a = 1",
        ],
        "read-only",
        "follower reads: tests/crdb_facts/grammar.md section 7",
    ),
]
SEQUENCES_ACCEPTED: list[list[str]] = [
    [
        "BEGIN",
        "SAVEPOINT cockroach_restart",
        "SELECT a FROM t FOR UPDATE",
        "RELEASE SAVEPOINT cockroach_restart",
        "COMMIT",
    ],
    ["BEGIN AS OF SYSTEM TIME '-5s'", "SELECT a FROM t", "COMMIT"],
    [
        "BEGIN AS OF SYSTEM TIME '-5s'",
        "SELECT a FROM t AS OF SYSTEM TIME '-5s'",
        "COMMIT",
    ],
    ["BEGIN READ ONLY", "SELECT a FROM t", "COMMIT", "SELECT a FROM t FOR UPDATE"],
    ["SET TRANSACTION AS OF SYSTEM TIME '-5s'", "SELECT a FROM t"],
    ["DISCARD ALL", "SELECT 1"],
]


def _ids(cases: list[tuple[str, ...]]) -> list[str]:
    return [case[0][:48] for case in cases]


@pytest.mark.parametrize(("sql", "source"), ACCEPTED, ids=_ids(ACCEPTED))
def test_accepted(sql: str, source: str) -> None:
    for release in WINDOW:
        assert problems(sql, release=release) == [], (release, source)


@pytest.mark.parametrize(("sql", "fragment", "source"), REFUSED, ids=_ids(REFUSED))
def test_refused(sql: str, fragment: str, source: str) -> None:
    for release in WINDOW:
        found = problems(sql, release=release)
        assert any(fragment in p for p in found), (release, source, found)


@pytest.mark.parametrize(("sql", "fragment", "refused", "accepted"), BY_RELEASE)
def test_release_specific(sql: str, fragment: str, refused: str, accepted: str) -> None:
    assert any(fragment in p for p in problems(sql, release=refused))
    assert problems(sql, release=accepted) == []


@pytest.mark.parametrize(("statements", "fragment", "source"), SEQUENCES)
def test_transaction_refused(statements: list[str], fragment: str, source: str) -> None:
    found = transaction_problems(statements)
    assert any(fragment in p for p in found), (source, found)


@pytest.mark.parametrize("statements", SEQUENCES_ACCEPTED)
def test_transaction_accepted(statements: list[str]) -> None:
    assert transaction_problems(statements) == []


def test_unknown_release_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"v24\.3"):
        problems("SELECT 1", release="v9.9")


def test_case_counts() -> None:
    """Dozens of each, as the layer's README section reports."""
    assert len(ACCEPTED) + len(SEQUENCES_ACCEPTED) >= 60
    assert len(REFUSED) + len(BY_RELEASE) + len(SEQUENCES) >= 70
