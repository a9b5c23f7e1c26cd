"""Golden tests: every column row of tests/crdb_facts/ through our parsers.

The rows are what real CockroachDB servers answered (tests/crdb_facts/,
each record names its logic test or docs page). No server is needed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql.base import ischema_names

from sqlalchemy_crdb_async.dialect.indexdef import strip_type_annotations
from sqlalchemy_crdb_async.dialect.reflection import (
    column_from_information_schema,
    merge_crdb_column,
)
from sqlalchemy_crdb_async.dialect.types import crdb_type_name, type_from_crdb
from tests import facts

FACTS = json.loads((facts.FACTS_DIR / "information_schema_columns.json").read_text())
CASES = {case["id"]: case for case in FACTS["information_schema_cases"]}
DATA_TYPE_ROWS = CASES["data_types"]["rows"]

#: crdb_sql_type -> repr of the SQLAlchemy type it must reflect as.
EXPECTED = {
    "INT8": "BIGINT()",
    "INT2": "SMALLINT()",
    "INT4": "INTEGER()",
    "FLOAT8": "DOUBLE_PRECISION()",
    "FLOAT4": "REAL()",
    "DECIMAL": "NUMERIC()",
    "DECIMAL(3)": "NUMERIC(precision=3)",
    "DECIMAL(3,2)": "NUMERIC(precision=3, scale=2)",
    "STRING": "TEXT()",
    "STRING COLLATE en": "TEXT(collation='en')",
    "CHAR": "CHAR()",
    "CHAR(2)": "CHAR(length=2)",
    "VARCHAR": "VARCHAR()",
    "VARCHAR(2)": "VARCHAR(length=2)",
    '"char"': "String()",
    "BYTES": "BYTEA()",
    "TIMESTAMP": "TIMESTAMP()",
    "TIMESTAMP(6)": "TIMESTAMP(precision=6)",
    "TIMESTAMPTZ": "TIMESTAMP(timezone=True)",
    "TIMESTAMPTZ(6)": "TIMESTAMP(timezone=True, precision=6)",
    "BIT": "BIT(length=1)",
    "BIT(2)": "BIT(length=2)",
    "VARBIT": "BIT(varying=True)",
    "VARBIT(2)": "BIT(length=2, varying=True)",
    "INTERVAL": "INTERVAL()",
    "BOOL": "BOOLEAN()",
    "OID": "OID()",
    "REGCLASS": "REGCLASS()",
    "REGNAMESPACE": "OID()",
    "REGPROC": "OID()",
    "REGPROCEDURE": "OID()",
    "REGTYPE": "OID()",
    "UUID": "UUID()",
    "INT2[]": "ARRAY(SMALLINT())",
    "STRING[]": "ARRAY(TEXT())",
    "DECIMAL(3,2)[]": "ARRAY(NUMERIC(precision=3, scale=2))",
    "VARCHAR(2)[] COLLATE en": "ARRAY(VARCHAR(length=2, collation='en'))",
    "INET": "INET()",
    "TIME": "TIME()",
    "TIME(6)": "TIME(precision=6)",
    "JSONB": "JSONB(astext_type=Text())",
    "NAME": "String()",
}

# information_schema.data_type names PostgreSQL's reflection has no class for;
# the reg* types are OID aliases in both servers.
_DATA_TYPE_ALIASES = {
    '"char"': sqltypes.String,
    "regnamespace": pg.OID,
    "regproc": pg.OID,
    "regprocedure": pg.OID,
    "regtype": pg.OID,
}


def test_every_data_type_row_has_an_expectation() -> None:
    assert {row["crdb_sql_type"] for row in DATA_TYPE_ROWS} <= set(EXPECTED)


@pytest.mark.parametrize(
    "row", DATA_TYPE_ROWS, ids=[r["column_name"] for r in DATA_TYPE_ROWS]
)
def test_crdb_sql_type_parses(row: dict[str, Any]) -> None:
    parsed = type_from_crdb(row["crdb_sql_type"])
    assert repr(parsed) == EXPECTED[row["crdb_sql_type"]]


@pytest.mark.parametrize(
    "row", DATA_TYPE_ROWS, ids=[r["column_name"] for r in DATA_TYPE_ROWS]
)
def test_parsed_type_agrees_with_information_schema_data_type(
    row: dict[str, Any],
) -> None:
    """Cross-check against the row's own PostgreSQL-style ``data_type``."""
    parsed = type_from_crdb(row["crdb_sql_type"])
    if row["data_type"] == "ARRAY":
        assert isinstance(parsed, pg.ARRAY)
        element = type_from_crdb(row["crdb_sql_type"].replace("[]", ""))
        assert repr(parsed.item_type) == repr(element)
        return
    expected_cls = (
        _DATA_TYPE_ALIASES.get(row["data_type"]) or ischema_names[row["data_type"]]
    )
    assert isinstance(parsed, expected_cls)


def test_int_means_int8() -> None:
    # INT, INTEGER and BIGINT are all INT8 (default_int_size 8)
    for name in ("INT", "INTEGER", "BIGINT", "INT8"):
        assert isinstance(type_from_crdb(name), pg.BIGINT)


def test_json_reflects_as_jsonb() -> None:
    # tests/crdb_facts/information_schema_columns.json json_becomes_jsonb
    assert isinstance(type_from_crdb("JSON"), pg.JSONB)


@pytest.mark.parametrize("name", ["public.greeting", "greeting", "GEOMETRY", ""])
def test_unknown_types_are_none(name: str) -> None:
    assert type_from_crdb(name) is None


@pytest.mark.parametrize(
    ("sqla_type", "crdb_name"),
    [
        (sqltypes.Integer(), "INT4"),
        (sqltypes.BigInteger(), "INT8"),
        (sqltypes.SmallInteger(), "INT2"),
        (sqltypes.String(), "STRING"),
        (sqltypes.Text(), "STRING"),
        (sqltypes.String(20), "VARCHAR(20)"),
        (sqltypes.CHAR(3), "CHAR(3)"),
        (sqltypes.Numeric(10, 2), "DECIMAL(10,2)"),
        (sqltypes.LargeBinary(), "BYTES"),
        (sqltypes.JSON(), "JSONB"),
        (sqltypes.DateTime(timezone=True), "TIMESTAMPTZ"),
        (sqltypes.Time(timezone=True), "TIMETZ"),
        (pg.ARRAY(sqltypes.Integer()), "INT4[]"),
        (sqltypes.Uuid(), "UUID"),
        (sqltypes.Boolean(), "BOOL"),
        (sqltypes.Double(), "FLOAT8"),
        (sqltypes.REAL(), "FLOAT4"),
    ],
)
def test_crdb_type_name_round_trips(
    sqla_type: sqltypes.TypeEngine[Any], crdb_name: str
) -> None:
    assert crdb_type_name(sqla_type) == crdb_name
    reparsed = type_from_crdb(crdb_name)
    assert reparsed is not None
    assert reparsed._type_affinity is sqla_type._type_affinity


# -- whole rows ------------------------------------------------------------------


def _rows(case_id: str) -> list[dict[str, Any]]:
    return list(CASES[case_id]["rows"])


@pytest.mark.parametrize("case_id", ["with_defaults_v20_2", "with_defaults_v25"])
def test_defaults_lose_type_annotations(case_id: str) -> None:
    # v20.2 annotated literals (9:::INT8); v25 does not; both reflect the same.
    by_name = {
        r["column_name"]: column_from_information_schema(
            {**r, "crdb_sql_type": "INT8"}, include_hidden=True
        )
        for r in _rows(case_id)
    }
    assert {k: v["default"] for k, v in by_name.items() if v} == {
        "a": "9",
        "b": "'default'",
        "c": None,
        "d": None,
        "rowid": "unique_rowid()",
    }
    assert by_name["rowid"]["autoincrement"] is True
    assert by_name["a"]["autoincrement"] is False


def test_nullability_rows() -> None:
    cols = {
        r["column_name"]: column_from_information_schema(
            {**r, "crdb_sql_type": "INT8"}, include_hidden=True
        )
        for r in _rows("nullability")
    }
    assert {k: v["nullable"] for k, v in cols.items() if v} == {
        "a": False,
        "b": False,
        "c": True,
        "d": True,
        "rowid": False,
    }


@pytest.mark.parametrize("case_id", ["computed_v20_2", "computed_v25"])
def test_computed_rows(case_id: str) -> None:
    cols = {
        r["column_name"]: column_from_information_schema(
            {**r, "crdb_sql_type": "INT8"}, include_hidden=True
        )
        for r in _rows(case_id)
    }
    assert cols["b"] is not None
    assert cols["b"]["computed"]["sqltext"] == "a + 1"
    assert cols["b"]["default"] is None
    assert cols["a"] is not None
    assert "computed" not in cols["a"]


def test_identity_rows() -> None:
    cols = {
        r["column_name"]: column_from_information_schema(
            {**r, "crdb_sql_type": "INT8"}, include_hidden=True
        )
        for r in _rows("identity_v25")
    }
    assert cols["b"] is not None
    assert cols["c"] is not None
    assert cols["b"]["identity"] == {"always": True}
    assert cols["c"]["identity"] == {"always": False}
    assert cols["b"]["autoincrement"] is True
    assert cols["a"] is not None
    assert "identity" not in cols["a"]


def test_enum_default_keeps_label_loses_annotation() -> None:
    row = CASES["enum_default"]["rows"][0]
    assert (
        strip_type_annotations(row["column_default (information_schema.columns)"])
        == "'hello'"
    )
    z = CASES["enum_default"]["rows"][1]
    assert (
        strip_type_annotations(z["column_default (information_schema.columns)"])
        == "'hello' IS OF (public.greeting, public.greeting)"
    )


def test_enum_computed_expressions_are_unannotated() -> None:
    for row in CASES["enum_computed"]["rows"]:
        text_ = row["generation_expression"]
        assert strip_type_annotations(text_) == text_


def test_annotations_inside_string_literals_are_kept() -> None:
    assert strip_type_annotations("'a:::INT8'::STRING") == "'a:::INT8'::STRING"
    assert strip_type_annotations("now():::TIMESTAMPTZ") == "now()"


# -- hidden columns ----------------------------------------------------------------


def _show_columns_case(case_id: str) -> dict[str, Any]:
    return next(c for c in FACTS["show_columns_cases"] if c["id"] == case_id)


def test_hash_shard_column_is_hidden_unless_asked() -> None:
    case = _show_columns_case("hash-sharded events (docs v24.3)")
    names = case["column_names"]
    rows = [dict(zip(names, r, strict=True)) for r in case["rows"]]
    visible, everything = [], []
    for row in rows:
        info = {
            "column_name": row["column_name"],
            "crdb_sql_type": row["data_type"],
            "is_nullable": row["is_nullable"],
            "column_default": row["column_default"],
            "is_generated": "ALWAYS" if row["generation_expression"] else "NEVER",
            "generation_expression": row["generation_expression"],
            "is_hidden": row["is_hidden"],
        }
        col = column_from_information_schema(info)
        if col is not None:
            visible.append(col["name"])
        everything.append(column_from_information_schema(info, include_hidden=True))
    assert "crdb_internal_ts_shard_20" not in visible
    assert visible == ["product_id", "owner", "serial_number", "event_id", "ts", "data"]
    shard = everything[-1]
    assert shard is not None
    assert shard["dialect_options"] == {"cockroachdb_hidden": True}
    # the older sqlalchemy-cockroachdb's key is kept on every column
    assert shard["is_hidden"] is True
    assert [c["is_hidden"] for c in everything[:-1] if c] == [False] * 6
    assert shard["computed"]["sqltext"] == (
        "mod(fnv32(crdb_internal.datums_to_bytes(ts)), 20)"
    )
    assert isinstance(everything[0]["type"], pg.BIGINT)  # type: ignore[index]
    assert isinstance(everything[5]["type"], pg.JSONB)  # type: ignore[index]


def test_rowid_is_hidden_unless_asked() -> None:
    row = {
        "column_name": "rowid",
        "crdb_sql_type": "INT8",
        "is_nullable": "NO",
        "column_default": "unique_rowid()",
        "is_hidden": "YES",
    }
    assert column_from_information_schema(row) is None
    col = column_from_information_schema(row, include_hidden=True)
    assert col is not None
    assert col["autoincrement"] is True


def test_unknown_type_without_fallback_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown CockroachDB type 'public\.mood'"):
        column_from_information_schema(
            {"column_name": "m", "crdb_sql_type": "public.mood", "is_hidden": "NO"}
        )


def test_identity_found_by_postgresql_reflection_keeps_no_default() -> None:
    # pg_attrdef shows nextval('public.t1_m_seq'::REGCLASS) for identity columns
    # (tests/crdb_facts/information_schema_columns.json pg_attrdef_v25); PostgreSQL-side
    # reflection already made it an identity, so the information_schema default
    # must not come back as a default.
    rows = FACTS["pg_catalog_column_rows"]["pg_attrdef_v25"]["rows"]
    nextval = next(r[4] for r in rows if r[4].startswith("nextval("))
    column = merge_crdb_column(
        {"name": "m", "identity": {"always": True, "start": 1}, "default": None},
        {"column_name": "m", "crdb_sql_type": "INT8", "column_default": nextval},
        include_hidden=False,
    )
    assert column is not None
    assert column["default"] is None
    assert column["identity"] == {"always": True, "start": 1}
    assert column["autoincrement"] is True


@pytest.mark.parametrize(
    "row", FACTS["pg_catalog_column_rows"]["pg_attrdef_v25"]["rows"], ids=str
)
def test_pg_attrdef_defaults_are_readable_sql(row: list[Any]) -> None:
    # adbin == adsrc == pg_get_expr() on CockroachDB
    # (tests/crdb_facts/information_schema_columns.json pg_attrdef_v25)
    assert row[4] == row[5] == row[6]
    assert strip_type_annotations(row[4]) == row[4]
