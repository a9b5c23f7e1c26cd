"""Golden tests: every index definition in tests/crdb_facts/indexes.json, parsed.

``pg_indexes.indexdef`` (two server eras), the hash-sharded form and
``pg_get_indexdef`` output are real CockroachDB answers (tests/crdb_facts/).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sqlalchemy_crdb_async.dialect.indexdef import (
    parse_crdb_index_clause,
    parse_crdb_indexdef,
    split_top_level,
)
from sqlalchemy_crdb_async.dialect.reflection import rename_pg_options
from tests import facts

FACTS = json.loads((facts.FACTS_DIR / "indexes.json").read_text())

PLAIN = {"column_sorting": None, "expressions": None, "dialect_options": None}

#: index name -> the keys of the parsed dict that matter (None = key absent).
EXPECTED: dict[str, dict[str, Any]] = {
    "primary": {"unique": None},  # checked per row below (sequences differ)
    "t1_pkey": {"unique": True, "column_names": ["p"], **PLAIN},
    "t1_a_key": {"unique": True, "column_names": ["a"], **PLAIN},
    "index_key": {"unique": True, "column_names": ["b", "c"], **PLAIN},
    "t2_pkey": {"unique": True, "column_names": ["rowid"], **PLAIN},
    "mv1_pkey": {"unique": True, "column_names": ["rowid"], **PLAIN},
    "t2_t1_id_idx": {"unique": False, "column_names": ["t1_id"], **PLAIN},
    "t3_a_b_idx": {
        "unique": False,
        "column_names": ["a", "b"],
        "column_sorting": {"b": ("desc",)},
        "expressions": None,
        "dialect_options": {"cockroachdb_storing": ["c"]},
    },
    "t6_expr_idx": {
        "unique": False,
        "column_names": [None],
        "expressions": ["a + b"],
        "column_sorting": None,
        "dialect_options": None,
    },
    "t6_expr_expr1_idx": {
        "unique": False,
        "column_names": [None, None],
        "expressions": ["lower(c)", "a + b"],
        "column_sorting": None,
    },
    "t6_expr_key": {
        "unique": True,
        "column_names": [None],
        "expressions": ["lower(c)"],
    },
    "t6_expr_idx1": {
        "unique": False,
        "column_names": [None],
        "expressions": ["m = 'foo'::constraint_db.public.mytype"],
        "dialect_options": {
            "cockroachdb_where": "m = 'foo'::constraint_db.public.mytype"
        },
    },
}

PG_INDEX_ROWS = [
    (era, *row)
    for era in ("v21_2_rows", "v25_rows")
    for row in FACTS["pg_indexes"][era]["rows"]
]


def _check(parsed: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if value is None:
            assert key not in parsed, (key, parsed)
        else:
            assert parsed[key] == value, (key, parsed)


@pytest.mark.parametrize(
    ("era", "table", "name", "indexdef"),
    PG_INDEX_ROWS,
    ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in PG_INDEX_ROWS],
)
def test_pg_indexes_rows(era: str, table: str, name: str, indexdef: str) -> None:
    parsed = parse_crdb_indexdef(indexdef)
    assert parsed["name"] == name
    if name == "primary":
        column = (
            "value" if table.endswith("_seq") else ("p" if table == "t1" else "rowid")
        )
        assert parsed["column_names"] == [column]
        # identity sequences list a non-unique "primary" index
        # (tests/crdb_facts/indexes.json v25)
        assert parsed["unique"] is (not table.endswith("_seq"))
        return
    _check(parsed, EXPECTED[name])


def test_every_named_index_has_an_expectation() -> None:
    names = {row[2] for row in PG_INDEX_ROWS}
    assert names <= set(EXPECTED)


def test_hash_sharded_primary() -> None:
    (row,) = FACTS["pg_indexes"]["hash_sharded"]["rows"]
    parsed = parse_crdb_indexdef(row[2])
    # the shard column is not listed as a key
    # (tests/crdb_facts/indexes.json hash_sharded notes)
    assert parsed == {
        "name": "primary",
        "unique": True,
        "column_names": ["a"],
        "dialect_options": {
            "cockroachdb_hash_sharded": True,
            "cockroachdb_bucket_count": 10,
        },
    }


def test_pg_get_indexdef_with_expressions() -> None:
    parsed = parse_crdb_indexdef(FACTS["pg_get_indexdef"]["whole"]["result"])
    assert parsed == {
        "name": "expr_idx",
        "unique": False,
        "column_names": ["id", None, None],
        "expressions": ["id", "json->>'bar'::text", "length(id)"],
    }
    # the per-column answers name the same elements (parentheses aside)
    per_column = FACTS["pg_get_indexdef"]["per_column"]["results"]
    assert [per_column[str(k)].strip("()") for k in (1, 2, 3)] == [
        e.strip("()") for e in parsed["expressions"]
    ]


# Inverted indexes: the golden data found no pg_indexes.indexdef for them
# ("NOT FOUND" in tests/crdb_facts/indexes.json); these two spellings are the
# ones the parser accepts, from the DDL forms CockroachDB documents
# (CREATE INVERTED INDEX, CREATE INDEX ... USING GIN;
# https://www.cockroachlabs.com/docs/stable/inverted-indexes).
@pytest.mark.parametrize(
    "indexdef",
    [
        "CREATE INVERTED INDEX c_foo_idx ON test.public.c (foo)",
        "CREATE INDEX c_foo_idx ON test.public.c USING gin (foo)",
    ],
)
def test_inverted_spellings(indexdef: str) -> None:
    parsed = parse_crdb_indexdef(indexdef)
    assert parsed["column_names"] == ["foo"]
    assert parsed["dialect_options"] == {"cockroachdb_inverted": True}


def test_quoted_names_and_partial_unique() -> None:
    parsed = parse_crdb_indexdef(
        'CREATE UNIQUE INDEX "c_bAr_idx" ON test.public.c USING btree '
        '("bAr" DESC, b ASC) STORING ("x y", z) WHERE (b > 0)'
    )
    assert parsed == {
        "name": "c_bAr_idx",
        "unique": True,
        "column_names": ["bAr", "b"],
        "column_sorting": {"bAr": ("desc",)},
        "dialect_options": {
            "cockroachdb_storing": ["x y", "z"],
            "cockroachdb_where": "b > 0",
        },
    }


@pytest.mark.parametrize(
    "bad",
    ["", "CREATE TABLE t (a INT)", "CREATE INDEX i ON t (a) TABLESPACE x"],
)
def test_bad_indexdef_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="index definition"):
        parse_crdb_indexdef(bad)


def test_split_top_level_respects_nesting_and_quotes() -> None:
    assert split_top_level("a, f(b, c), 'x,y', \"q,r\"") == [
        "a",
        "f(b, c)",
        "'x,y'",
        '"q,r"',
    ]


def test_rename_pg_options_renames_reflected_keys_only() -> None:
    reflected = [
        (
            (None, "t"),
            [
                {
                    "name": "i",
                    "column_names": ["a"],
                    "dialect_options": {"postgresql_include": ["b"]},
                }
            ],
        ),
        ((None, "u"), {"postgresql_with": {"fillfactor": "50"}, "comment": None}),
    ]
    assert rename_pg_options(reflected) == [
        (
            (None, "t"),
            [
                {
                    "name": "i",
                    "column_names": ["a"],
                    "dialect_options": {"cockroachdb_include": ["b"]},
                }
            ],
        ),
        ((None, "u"), {"cockroachdb_with": {"fillfactor": "50"}, "comment": None}),
    ]


# -- SHOW CREATE TABLE index lines --------------------------------------------
# tests/crdb_facts/indexes.json show_create_indexes and the show_create cases of
# tests/crdb_facts/information_schema_columns.json.

COLUMN_FACTS = json.loads(
    (facts.FACTS_DIR / "information_schema_columns.json").read_text()
)


def _index_lines() -> list[str]:
    def pick(text: str) -> list[str]:
        return [
            line.strip()
            for line in text.split("\n")
            if "INDEX " in line or "PRIMARY KEY" in line
        ]

    show_create = FACTS["show_create_indexes"]
    lines = pick(show_create["partial"]["show_create"])
    lines += show_create["inverted"]["lines"]
    for variant in show_create["hash_sharded_variants"]:
        lines += pick(variant.get("show_create", ""))
        lines += pick("\n".join(variant.get("secondary_example", [])))
        lines += pick(variant.get("index_line", ""))
    for case in COLUMN_FACTS["show_create_cases"]:
        lines += pick(case.get("show_create", ""))
        lines += pick("\n".join(case.get("show_create_lines", [])))
    return lines


SHOW_CREATE_LINES = _index_lines()

#: line prefix (up to the column list) -> (unique, key columns, options, sorting)
CLAUSE_EXPECTED: dict[str, tuple[bool, list[str], dict[str, Any], dict[str, Any]]] = {
    "CONSTRAINT t6_pkey PRIMARY KEY": (True, ["rowid"], {}, {}),
    "INDEX t6_a_idx ": (False, ["a"], {"cockroachdb_where": "a > 0"}, {}),
    "INDEX t6_a_idx1 ": (False, ["a"], {"cockroachdb_where": "a > 1"}, {}),
    "INDEX t6_a_idx2 ": (
        False,
        ["a"],
        {"cockroachdb_where": "a > 2"},
        {"a": ("desc",)},
    ),
    "UNIQUE INDEX t6_a_key ": (True, ["a"], {"cockroachdb_where": "a > 3"}, {}),
    "UNIQUE INDEX t6_a_key1 ": (True, ["a"], {"cockroachdb_where": "a > 4"}, {}),
    "UNIQUE INDEX t6_a_key2 ": (
        True,
        ["a"],
        {"cockroachdb_where": "a > 5"},
        {"a": ("desc",)},
    ),
    "INDEX t6i1 ": (False, ["a"], {"cockroachdb_where": "a > 6"}, {}),
    "INDEX t6i2 ": (False, ["a"], {"cockroachdb_where": "a > 7"}, {}),
    "INDEX t6i3 ": (False, ["a"], {"cockroachdb_where": "a > 8"}, {"a": ("desc",)}),
    "INVERTED INDEX c_foo_idx ": (False, ["foo"], {"cockroachdb_inverted": True}, {}),
    'INVERTED INDEX "c_bAr_idx" ': (
        False,
        ["bAr"],
        {"cockroachdb_inverted": True},
        {},
    ),
    "CONSTRAINT sharded_primary_pkey PRIMARY KEY": (
        True,
        ["a"],
        {"cockroachdb_hash_sharded": True, "cockroachdb_bucket_count": 10},
        {},
    ),
    "CONSTRAINT sharded_secondary_pkey PRIMARY KEY": (True, ["rowid"], {}, {}),
    "INDEX sharded_secondary_a_idx ": (
        False,
        ["a"],
        {"cockroachdb_hash_sharded": True, "cockroachdb_bucket_count": 4},
        {},
    ),
    "INDEX events_ts_idx ": (
        False,
        ["ts"],
        {"cockroachdb_hash_sharded": True, "cockroachdb_bucket_count": 16},
        {},
    ),
    'CONSTRAINT "primary" PRIMARY KEY (a': (True, ["a"], {}, {}),
    'CONSTRAINT "primary" PRIMARY KEY (rowid': (True, ["rowid"], {}, {}),
    "UNIQUE INDEX serial_c_key ": (True, ["c"], {}, {}),
    "CONSTRAINT t1_pkey PRIMARY KEY": (True, ["rowid"], {}, {}),
    "INDEX i ": (False, ["x"], {}, {}),
    "CONSTRAINT users_rbr_pkey PRIMARY KEY": (True, ["id"], {}, {}),
    "CONSTRAINT c_pkey PRIMARY KEY": (True, ["id"], {}, {}),
}


def _expected_for(line: str) -> tuple[bool, list[str], dict[str, Any], dict[str, Any]]:
    matches = [k for k in CLAUSE_EXPECTED if line.startswith(k)]
    assert len(matches) == 1, (line, matches)
    return CLAUSE_EXPECTED[matches[0]]


def test_show_create_lines_were_found() -> None:
    assert len(SHOW_CREATE_LINES) >= 20


@pytest.mark.parametrize("line", SHOW_CREATE_LINES)
def test_show_create_index_lines(line: str) -> None:
    unique, columns, options, sorting = _expected_for(line)
    parsed = parse_crdb_index_clause(line)
    assert parsed["unique"] is unique
    assert parsed["column_names"] == columns
    assert parsed.get("dialect_options", {}) == options
    assert parsed.get("column_sorting", {}) == sorting


def test_enum_predicate_loses_its_annotations() -> None:
    # tests/crdb_facts/indexes.json show_create_indexes partial notes:
    # enum predicate example
    parsed = parse_crdb_index_clause(
        "INDEX i (a ASC) WHERE b IN "
        "('foo':::public.enum_type, 'bar':::public.enum_type)"
    )
    assert parsed["dialect_options"] == {"cockroachdb_where": "b IN ('foo', 'bar')"}


def test_bad_index_clause_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a CockroachDB index clause"):
        parse_crdb_index_clause('FAMILY "primary" (a, b)')


# -- pg_constraint rows: CockroachDB's FOREIGN KEY text goes through the
# PostgreSQL-side parser this dialect keeps for both servers ---------------------

FK_EXPECTED = {
    "FOREIGN KEY (a, b) REFERENCES t1(b, c)": ("a, b", "t1", "b, c", None, None, None),
    "FOREIGN KEY (b, c) REFERENCES t4(b, c) MATCH FULL ON UPDATE RESTRICT": (
        "b, c",
        "t4",
        "b, c",
        "FULL",
        "RESTRICT",
        None,
    ),
    "FOREIGN KEY (a) REFERENCES t4(a) ON DELETE CASCADE": (
        "a",
        "t4",
        "a",
        None,
        None,
        "CASCADE",
    ),
    "FOREIGN KEY (t1_id) REFERENCES t1(a)": ("t1_id", "t1", "a", None, None, None),
}
FK_ROWS = [
    row[2] for row in FACTS["pg_constraint"]["v21_2_rows"]["rows"] if row[1] == "f"
]


@pytest.mark.parametrize("condef", FK_ROWS)
def test_foreign_key_condef_rows_parse(condef: str) -> None:
    # with or without a space before the referenced column list (older CockroachDB
    # wrote `REFERENCES f1 (x)`: https://github.com/cockroachdb/cockroach/issues/27123)
    from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg

    parsed = CockroachDBDialect_asyncpg()._parse_fk(condef)
    columns, schema, table, referred, match, onupdate, ondelete = parsed[:7]
    assert schema is None
    assert (columns, table, referred, match, onupdate, ondelete) == FK_EXPECTED[condef]
