"""Vector indexes: ``Index(..., cockroachdb_vector=True)`` on both servers.

On CockroachDB (v25.2+, https://www.cockroachlabs.com/docs/v25.2/vector-indexes)
the DDL compiler (:mod:`.compiler`) writes ``CREATE VECTOR INDEX name ON t
(prefix, ..., vec opclass) WITH (...)`` and, inside ``CREATE TABLE``, ``VECTOR
INDEX name (...)``; this module checks what CockroachDB would refuse and
renders the storage parameters::

    Index(
        "items_embedding_idx",
        items.c.customer_id,             # prefix columns: equality-filtered
        items.c.embedding,               # the VECTOR(n) column, last
        cockroachdb_vector=True,
        cockroachdb_ops={"embedding": "vector_cosine_ops"},
        cockroachdb_with={"min_partition_size": 16, "max_partition_size": 128},
    )

Refused with a ``CompileError`` before anything is sent, as CockroachDB refuses
them (tests/crdb_facts/vectors.md section 3, from cockroach
pkg/sql/logictest/testdata/logic_test/vector_index):

- the last column not a ``VECTOR(n)`` with a fixed dimension, or a ``VECTOR``
  column anywhere else;
- an ``ASC``/``DESC`` on any column (v25.3: "Directionality may no longer be
  assigned to any vector index column");
- UNIQUE, hash sharding, STORING (checked in :mod:`.compiler`);
- operator classes other than ``vector_l2_ops`` (v25.2) and
  ``vector_cosine_ops`` / ``vector_ip_ops`` (v25.3,
  https://github.com/cockroachdb/cockroach/pull/147681);
- storage parameters other than ``min_partition_size`` (1 to 1024),
  ``max_partition_size`` (4 to 4096, at least 4 x min) and ``build_beam_size``
  (1 to 512), written in that order, CockroachDB's own
  (``WITH (min_partition_size=.., max_partition_size=.., build_beam_size=..)``
  in its vector-index tests).

On PostgreSQL the same ``Index`` becomes pgvector's HNSW index, ``CREATE INDEX
name ON t USING hnsw (vec opclass)`` (default ``vector_l2_ops``): pgvector's
``hnsw`` indexes one column, so prefix columns are refused there with a
``CompileError``; the C-SPANN partition parameters, meaningless to HNSW, are left
out, and pgvector's own (``m``, ``ef_construction``) pass through from
``postgresql_with``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc
from sqlalchemy.sql import coercions, operators, roles
from sqlalchemy.sql.elements import UnaryExpression

__all__ = [
    "CRDB_VECTOR_PARAMS",
    "VECTOR_OPCLASSES",
    "check_crdb_vector_index",
    "crdb_vector_with",
    "pg_vector_index",
]

#: Operator class -> the CockroachDB release that has it (module docstring).
VECTOR_OPCLASSES: dict[str, tuple[int, int]] = {
    "vector_l2_ops": (25, 2),
    "vector_cosine_ops": (25, 3),
    "vector_ip_ops": (25, 3),
}
#: Storage parameter -> inclusive range, in CockroachDB's order.
CRDB_VECTOR_PARAMS: dict[str, tuple[int, int]] = {
    "min_partition_size": (1, 1024),
    "max_partition_size": (4, 4096),
    "build_beam_size": (1, 512),
}


def _name(expr: Any) -> str | None:
    return getattr(expr, "name", None) or getattr(expr, "key", None)


def _is_vector_type(type_: Any) -> bool:
    return type(type_).__name__ == "VECTOR"


def _known_non_vector(type_: Any) -> bool:
    """A typed expression (not text, not NullType) whose type is not VECTOR."""
    if type_ is None or type(type_).__name__ == "NullType":
        return False
    return not _is_vector_type(type_)


def _direction(expr: Any) -> str | None:
    if isinstance(expr, UnaryExpression) and expr.modifier in (
        operators.desc_op,
        operators.asc_op,
    ):
        return "DESC" if expr.modifier is operators.desc_op else "ASC"
    return None


def check_crdb_vector_index(dialect: Any, index: Any, ops: dict[str, str]) -> None:
    """Raise ``CompileError`` for what CockroachDB refuses (module docstring)."""
    expressions = list(index.expressions)
    last = len(expressions) - 1
    for position, expr in enumerate(expressions):
        name = _name(expr) or str(expr)
        direction = _direction(expr)
        if direction:
            raise exc.CompileError(
                f"index {index.name!r}: column {name!r} has {direction}; a "
                "CockroachDB vector index takes no direction on any column"
            )
        type_ = getattr(expr, "type", None)
        if position < last and _is_vector_type(type_):
            raise exc.CompileError(
                f"index {index.name!r}: column {name!r} has type vector, which is "
                "only allowed as the last column in a vector index"
            )
        if position == last and _known_non_vector(type_):
            raise exc.CompileError(
                f"index {index.name!r}: column {name!r} is not a VECTOR "
                "column; the last column of a vector index is the vector"
            )
        if (
            position == last
            and _is_vector_type(type_)
            and getattr(type_, "dim", 0) is None
        ):
            raise exc.CompileError(
                f"index {index.name!r}: vector column {name!r} has no fixed number "
                "of dimensions, so it cannot be indexed; declare it VECTOR(n)"
            )
    for column, opclass in ops.items():
        since = VECTOR_OPCLASSES.get(opclass)
        if since is None:
            raise exc.CompileError(
                f"index {index.name!r}: {opclass!r} on column {column!r} is not a "
                f"CockroachDB vector operator class; use one of "
                f"{', '.join(VECTOR_OPCLASSES)}"
            )
        if not dialect.crdb_at_least(*since):
            raise exc.CompileError(
                f"index {index.name!r}: {opclass} needs CockroachDB "
                f"v{since[0]}.{since[1]} or later; this server is "
                f"{dialect.server_info.describe()}"
            )


def crdb_vector_with(index: Any, params: dict[str, Any] | None) -> str:
    """`` WITH (min_partition_size=.., ...)`` in CockroachDB's order, or ``""``."""
    if not params:
        return ""
    unknown = sorted(set(params) - set(CRDB_VECTOR_PARAMS))
    if unknown:
        raise exc.CompileError(
            f"index {index.name!r}: {', '.join(unknown)} is not a CockroachDB "
            f"vector index storage parameter; use {', '.join(CRDB_VECTOR_PARAMS)}"
        )
    values: dict[str, int] = {}
    for name, (low, high) in CRDB_VECTOR_PARAMS.items():
        if name not in params:
            continue
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise exc.CompileError(
                f"index {index.name!r}: {name} is an int, got {value!r}"
            )
        if not low <= value <= high:
            raise exc.CompileError(
                f"index {index.name!r}: {name} must be between {low} and {high} "
                f"inclusive, got {value}"
            )
        values[name] = value
    low_size, high_size = (
        values.get("min_partition_size"),
        values.get("max_partition_size"),
    )
    if low_size is not None and high_size is not None and high_size < 4 * low_size:
        raise exc.CompileError(
            f"index {index.name!r}: max_partition_size ({high_size}) must be at "
            f"least four times min_partition_size ({low_size})"
        )
    return " WITH ({})".format(", ".join(f"{k}={v}" for k, v in values.items()))


def pg_vector_index(compiler: Any, create: Any, index: Any, pg: Any) -> str:
    """pgvector's ``CREATE INDEX ... USING hnsw`` for a vector index (module
    docstring)."""
    expressions = list(index.expressions)
    if len(expressions) != 1:
        raise exc.CompileError(
            f"index {index.name!r}: pgvector's hnsw index takes one vector column; "
            "CockroachDB's prefix columns have no PostgreSQL equivalent. Index the "
            "vector column alone on PostgreSQL."
        )
    (expr,) = expressions
    name = _name(expr)
    if _known_non_vector(getattr(expr, "type", None)):
        raise exc.CompileError(
            f"index {index.name!r}: column {name!r} is not a VECTOR column; "
            "pgvector's hnsw indexes a vector column"
        )
    opclass = (pg["ops"] or {}).get(name, "vector_l2_ops")
    column = compiler.sql_compiler.process(
        expr, include_table=False, literal_binds=True
    )
    text = "CREATE INDEX "
    if create.if_not_exists:
        text += "IF NOT EXISTS "
    text += (
        f"{compiler._prepared_index_name(index, include_schema=False)} ON "
        f"{compiler.preparer.format_table(index.table)} USING hnsw "
        f"({column} {opclass})"
    )
    options = {
        k: v for k, v in (pg["with"] or {}).items() if k not in CRDB_VECTOR_PARAMS
    }
    if options:
        text += " WITH ({})".format(", ".join(f"{k} = {v}" for k, v in options.items()))
    where = pg["where"]
    if where is not None:
        where = coercions.expect(roles.DDLExpressionRole, where)
        text += " WHERE " + compiler.sql_compiler.process(
            where, include_table=False, literal_binds=True
        )
    return text
