"""CockroachDB type names <-> SQLAlchemy types, for reflection and Alembic.

CockroachDB reports a column's type in ``information_schema.columns.crdb_sql_type``
in its own spelling (``INT8``, ``STRING``, ``VARCHAR(2)``, ``DECIMAL(3,2)[]``,
``STRING COLLATE en``, ``TIMESTAMPTZ(6)``;
tests/crdb_facts/information_schema_columns.json, case ``data_types``).
:func:`type_from_crdb` turns that text into the SQLAlchemy type that round-trips it::

    >>> type_from_crdb("DECIMAL(3,2)[]")
    ARRAY(NUMERIC(precision=3, scale=2))

:func:`crdb_type_name` goes the other way, for messages and Alembic.

Differences from PostgreSQL worth knowing:

- ``INT`` and ``INTEGER`` mean ``INT8`` on CockroachDB (``default_int_size`` 8,
  https://www.cockroachlabs.com/docs/v25.2/set-vars), so SQLAlchemy's
  ``Integer`` is emitted as ``INT4`` there (see :mod:`.compiler`) and ``INT8``
  reflects as ``BIGINT``.
- ``JSON`` is stored as ``JSONB`` (tests/crdb_facts/pg_catalog_support.md section 6):
  a ``JSON`` column reflects as :class:`~sqlalchemy.dialects.postgresql.JSONB`.
- ``STRING`` is ``TEXT``; ``BYTES`` is ``BYTEA``; ``FLOAT`` is ``FLOAT8``.
- ``SERIAL`` becomes ``INT8 DEFAULT unique_rowid()`` under the default
  ``serial_normalization = rowid`` (tests/crdb_facts/information_schema_columns.json,
  ``serial_rowid_default``).

Names this module does not know (user-defined ENUM types) give ``None``; the
reflection code then keeps the type PostgreSQL's reflection found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.types import TypeEngine

from .vector import VECTOR

__all__ = ["CRDB_TYPE_NAMES", "crdb_type_name", "type_from_crdb"]

_Factory = Callable[[tuple[int, ...], "str | None"], TypeEngine[Any]]


def _plain(cls: type[TypeEngine[Any]]) -> _Factory:
    return lambda args, collation: cls()


def _string(cls: type[sqltypes.String]) -> _Factory:
    return lambda args, collation: cls(args[0] if args else None, collation=collation)


def _numeric(args: tuple[int, ...], collation: str | None) -> TypeEngine[Any]:
    precision = args[0] if args else None
    scale = args[1] if len(args) > 1 else None
    return pg.NUMERIC(precision, scale)


def _timestamp(timezone: bool) -> _Factory:
    return lambda args, collation: pg.TIMESTAMP(
        timezone=timezone, precision=args[0] if args else None
    )


def _time(timezone: bool) -> _Factory:
    return lambda args, collation: pg.TIME(
        timezone=timezone, precision=args[0] if args else None
    )


def _bit(varying: bool) -> _Factory:
    return lambda args, collation: pg.BIT(args[0] if args else None, varying=varying)


def _vector(args: tuple[int, ...], collation: str | None) -> TypeEngine[Any]:
    return VECTOR(args[0] if args else None)


def _interval(args: tuple[int, ...], collation: str | None) -> TypeEngine[Any]:
    return pg.INTERVAL(precision=args[0] if args else None)


#: CockroachDB type name (upper case, no arguments) -> SQLAlchemy type factory.
CRDB_TYPE_NAMES: dict[str, _Factory] = {
    "INT2": _plain(pg.SMALLINT),
    "SMALLINT": _plain(pg.SMALLINT),
    "INT4": _plain(pg.INTEGER),
    # INT / INTEGER are INT8 (default_int_size 8,
    # https://www.cockroachlabs.com/docs/v25.2/set-vars)
    "INT": _plain(pg.BIGINT),
    "INTEGER": _plain(pg.BIGINT),
    "INT8": _plain(pg.BIGINT),
    "INT64": _plain(pg.BIGINT),
    "BIGINT": _plain(pg.BIGINT),
    "FLOAT4": _plain(pg.REAL),
    "REAL": _plain(pg.REAL),
    "FLOAT8": _plain(pg.DOUBLE_PRECISION),
    "FLOAT": _plain(pg.DOUBLE_PRECISION),
    "DOUBLE PRECISION": _plain(pg.DOUBLE_PRECISION),
    "DECIMAL": _numeric,
    "NUMERIC": _numeric,
    "STRING": _string(pg.TEXT),
    "TEXT": _string(pg.TEXT),
    "VARCHAR": _string(pg.VARCHAR),
    "CHAR": _string(pg.CHAR),
    "BPCHAR": _string(pg.CHAR),
    '"CHAR"': _string(sqltypes.String),  # PostgreSQL's one-byte "char"
    "NAME": _string(sqltypes.String),
    "BYTES": _plain(pg.BYTEA),
    "BYTEA": _plain(pg.BYTEA),
    "BOOL": _plain(pg.BOOLEAN),
    "BOOLEAN": _plain(pg.BOOLEAN),
    "DATE": _plain(pg.DATE),
    "TIME": _time(False),
    "TIMETZ": _time(True),
    "TIMESTAMP": _timestamp(False),
    "TIMESTAMPTZ": _timestamp(True),
    "INTERVAL": _interval,
    "UUID": _plain(pg.UUID),
    "INET": _plain(pg.INET),
    # JSON is stored as JSONB (tests/crdb_facts/pg_catalog_support.md section 6)
    "JSON": _plain(pg.JSONB),
    "JSONB": _plain(pg.JSONB),
    "BIT": _bit(False),
    "VARBIT": _bit(True),
    "OID": _plain(pg.OID),
    "REGCLASS": _plain(pg.REGCLASS),
    # the other reg* types are OID aliases, as in PostgreSQL
    "REGNAMESPACE": _plain(pg.OID),
    "REGPROC": _plain(pg.OID),
    "REGPROCEDURE": _plain(pg.OID),
    "REGTYPE": _plain(pg.OID),
    "REGROLE": _plain(pg.OID),
    # crdb_sql_type VECTOR(3) (types.go SQLString: "VECTOR(%d)"; format_type
    # drops the dimension there, cockroach pkg/sql/types/types.go
    # SQLStandardNameWithTypmod)
    "VECTOR": _vector,
}

_TYPE_RE = re.compile(
    r"""^\s*(?P<name>"char"|[A-Za-z_][A-Za-z0-9_ ]*?)\s*
        (?:\((?P<args>[^)]*)\))?\s*
        (?P<array>(?:\[\])*)\s*
        (?:COLLATE\s+(?P<collation>\S+))?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def type_from_crdb(crdb_sql_type: str) -> TypeEngine[Any] | None:
    """The SQLAlchemy type for a ``crdb_sql_type`` string, or None if unknown.

    ``None`` means a user-defined type (an ENUM) or a type this module does not
    map; callers fall back to PostgreSQL-style reflection for those.
    """
    match = _TYPE_RE.match(crdb_sql_type)
    if match is None:
        return None
    name = match["name"].upper()
    factory = CRDB_TYPE_NAMES.get(name)
    if factory is None:
        return None
    args = tuple(int(a) for a in (match["args"] or "").split(",") if a.strip())
    element = factory(args, match["collation"])
    if match["array"]:
        # dimensions are not kept, as in PostgreSQL
        return pg.ARRAY(element)
    return element


_GENERIC_NAMES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (sqltypes.SmallInteger, "INT2"),
    (sqltypes.BigInteger, "INT8"),
    (sqltypes.Integer, "INT4"),
    (pg.DOUBLE_PRECISION, "FLOAT8"),
    (sqltypes.Double, "FLOAT8"),
    (sqltypes.REAL, "FLOAT4"),
    (sqltypes.Float, "FLOAT8"),
    (sqltypes.Numeric, "DECIMAL"),
    (pg.JSON, "JSONB"),
    (sqltypes.JSON, "JSONB"),
    (sqltypes.LargeBinary, "BYTES"),
    (sqltypes.Boolean, "BOOL"),
    (sqltypes.Uuid, "UUID"),
    (sqltypes.Interval, "INTERVAL"),
    (sqltypes.Date, "DATE"),
)


def crdb_type_name(type_: TypeEngine[Any]) -> str:
    """How CockroachDB names ``type_`` in ``crdb_sql_type`` (best effort).

    ``crdb_type_name(BigInteger())`` is ``"INT8"``; arrays get ``[]``.
    """
    if isinstance(type_, sqltypes.ARRAY):
        return crdb_type_name(type_.item_type) + "[]"
    if isinstance(type_, VECTOR):
        return type_.get_col_spec()
    if isinstance(type_, sqltypes.DateTime):
        return "TIMESTAMPTZ" if type_.timezone else "TIMESTAMP"
    if isinstance(type_, sqltypes.Time):
        return "TIMETZ" if type_.timezone else "TIME"
    if isinstance(type_, sqltypes.String):
        length = getattr(type_, "length", None)
        if isinstance(type_, sqltypes.CHAR):
            base = "CHAR"
        elif isinstance(type_, sqltypes.Text) or length is None:
            return "STRING"
        else:
            base = "VARCHAR"
        return f"{base}({length})" if length is not None else base
    for cls, name in _GENERIC_NAMES:
        if isinstance(type_, cls):
            if name == "DECIMAL" and isinstance(type_, sqltypes.Numeric):
                if type_.precision is not None and type_.scale is not None:
                    return f"DECIMAL({type_.precision},{type_.scale})"
                if type_.precision is not None:
                    return f"DECIMAL({type_.precision})"
            return name
    return str(type_.compile(dialect=pg.dialect())).upper()  # type: ignore[no-untyped-call]
