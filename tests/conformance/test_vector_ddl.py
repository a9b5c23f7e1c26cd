"""Vector DDL the dialect writes on CockroachDB passes the conformance layer,
and what CockroachDB refuses is a CompileError before anything is sent
(dialect in CockroachDB mode from recorded version() strings)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from sqlalchemy_crdb_async import VECTOR, UnsupportedServerWarning
from tests.conformance.checker import assert_conforms
from tests.conformance.recording import crdb_dialect

V25_4 = "v25.4.0-alpha.2 (dev build)"
V25_2 = "v25.2.1"


def _items() -> sa.Table:
    return sa.Table(
        "items",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.Integer),
        sa.Column("region", sa.String(10)),
        sa.Column("embedding", VECTOR(3)),
        sa.Column("loose", VECTOR()),
    )


def _ddl(index_args: tuple[str, ...], label: str = V25_4, **kw: Any) -> str:
    table = _items()
    index = sa.Index("items_vec_idx", *(table.c[n] for n in index_args), **kw)
    return str(CreateIndex(index).compile(dialect=crdb_dialect(label)))


CASES: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
    (("embedding",), {}, "CREATE VECTOR INDEX items_vec_idx ON items (embedding)"),
    (
        ("customer_id", "region", "embedding"),
        {"cockroachdb_ops": {"embedding": "vector_cosine_ops"}},
        "CREATE VECTOR INDEX items_vec_idx ON items "
        "(customer_id, region, embedding vector_cosine_ops)",
    ),
    (
        ("embedding",),
        {
            "cockroachdb_ops": {"embedding": "vector_ip_ops"},
            # given in another order: written in CockroachDB's
            "cockroachdb_with": {
                "build_beam_size": 4,
                "max_partition_size": 64,
                "min_partition_size": 8,
            },
        },
        "CREATE VECTOR INDEX items_vec_idx ON items (embedding vector_ip_ops) "
        "WITH (min_partition_size=8, max_partition_size=64, build_beam_size=4)",
    ),
    (
        ("customer_id", "embedding"),
        {"cockroachdb_where": sa.text("customer_id > 0")},
        "CREATE VECTOR INDEX items_vec_idx ON items (customer_id, embedding) "
        "WHERE customer_id > 0",
    ),
]


@pytest.mark.parametrize(("columns", "kw", "expected"), CASES)
def test_vector_index_ddl(
    columns: tuple[str, ...], kw: dict[str, Any], expected: str
) -> None:
    sql = _ddl(columns, cockroachdb_vector=True, **kw)
    assert sql == expected
    assert_conforms(sql)


def test_inline_in_create_table_conforms() -> None:
    table = _items()
    sa.Index(
        "items_vec_idx",
        table.c.customer_id,
        table.c.embedding,
        cockroachdb_vector=True,
        cockroachdb_ops={"embedding": "vector_l2_ops"},
        cockroachdb_with={"min_partition_size": 16, "max_partition_size": 128},
    )
    sql = str(CreateTable(table).compile(dialect=crdb_dialect(V25_4)))
    assert (
        "VECTOR INDEX items_vec_idx (customer_id, embedding vector_l2_ops) "
        "WITH (min_partition_size=16, max_partition_size=128)"
    ) in sql
    assert "embedding VECTOR(3)" in sql
    assert_conforms(sql)


REFUSED: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
    (("embedding", "customer_id"), {}, "only allowed as the last column"),
    (("customer_id",), {}, "not a VECTOR column"),
    (("loose",), {}, "no fixed number of dimensions"),
    (("embedding",), {"unique": True}, "cannot be unique"),
    (("embedding",), {"cockroachdb_storing": ["region"]}, "STORING"),
    (("embedding",), {"cockroachdb_hash_sharded": True}, "hash-sharded"),
    (
        ("embedding",),
        {"cockroachdb_ops": {"embedding": "vector_l1_ops"}},
        "vector_l1_ops",
    ),
    (("embedding",), {"cockroachdb_with": {"m": 16}}, "not a CockroachDB vector"),
    (("embedding",), {"cockroachdb_with": {"min_partition_size": 0}}, "between 1"),
    (("embedding",), {"cockroachdb_with": {"build_beam_size": 513}}, "and 512"),
    (
        ("embedding",),
        {"cockroachdb_with": {"min_partition_size": 2, "max_partition_size": 7}},
        "four times",
    ),
]


@pytest.mark.parametrize(("columns", "kw", "refusal"), REFUSED)
def test_what_cockroachdb_refuses(
    columns: tuple[str, ...], kw: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(sa.exc.CompileError, match=refusal):
        _ddl(columns, cockroachdb_vector=True, **kw)


def test_direction_is_refused() -> None:
    table = _items()
    index = sa.Index(
        "items_vec_idx",
        table.c.customer_id.desc(),
        table.c.embedding,
        cockroachdb_vector=True,
    )
    with pytest.raises(sa.exc.CompileError, match="no direction"):
        CreateIndex(index).compile(dialect=crdb_dialect(V25_4))


def test_versions_are_gated() -> None:
    # cosine / inner-product operator classes: v25.3 (cockroach PR #147681)
    with pytest.raises(sa.exc.CompileError, match=r"v25\.3"):
        _ddl(
            ("embedding",),
            V25_2,
            cockroachdb_vector=True,
            cockroachdb_ops={"embedding": "vector_cosine_ops"},
        )
    assert _ddl(("embedding",), V25_2, cockroachdb_vector=True).startswith(
        "CREATE VECTOR INDEX"
    )
    # the VECTOR type itself: v24.2 (both releases are below the support
    # window, which warns)
    with pytest.warns(UnsupportedServerWarning):
        old, first = crdb_dialect("v24.1.0"), crdb_dialect("v24.2.3")
    with pytest.raises(sa.exc.CompileError, match=r"v24\.2"):
        str(CreateTable(_items()).compile(dialect=old))
    sql = str(CreateTable(_items()).compile(dialect=first))
    assert "embedding VECTOR(3)" in sql
    assert_conforms(sql)


def test_beam_size_statement_conforms() -> None:
    assert_conforms("SET LOCAL vector_search_beam_size = 64")
