"""A table with a column of every type the dialect maps (fast path tests)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()


class Colour(enum.Enum):
    red = "red"
    green = "green"


#: One column per type family the asyncpg dialect maps (its ``colspecs``), plus
#: the PostgreSQL types CockroachDB shares (JSONB, INET, ARRAY, UUID).
types_table = sa.Table(
    "fp_types",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("small", sa.SmallInteger),
    sa.Column("big", sa.BigInteger),
    sa.Column("num", sa.Numeric(12, 3)),
    sa.Column("num_float", sa.Numeric(12, 3, asdecimal=False)),
    sa.Column("flt", sa.Float),
    sa.Column("flt_dec", sa.Float(asdecimal=True)),
    sa.Column("dbl", sa.Double),
    sa.Column("s", sa.String(40)),
    sa.Column("txt", sa.Text),
    sa.Column("ch", sa.CHAR(3)),
    sa.Column("b", sa.Boolean),
    sa.Column("d", sa.Date),
    sa.Column("ts", sa.DateTime),
    sa.Column("tstz", sa.DateTime(timezone=True)),
    sa.Column("tm", sa.Time),
    sa.Column("iv", sa.Interval),
    sa.Column("js", sa.JSON),
    sa.Column("jb", pg.JSONB),
    sa.Column("u", sa.Uuid),
    sa.Column("u_str", sa.Uuid(as_uuid=False)),
    sa.Column("bin", sa.LargeBinary),
    sa.Column("arr", pg.ARRAY(sa.Integer)),
    sa.Column("en", sa.Enum(Colour, name="fp_colour")),
    sa.Column("inet", pg.INET),
)

FULL: dict[str, Any] = {
    "id": 1,
    "small": 7,
    "big": 2**40,
    "num": Decimal("1234.567"),
    "num_float": 2.5,
    "flt": 1.25,
    "flt_dec": Decimal("3.5"),
    "dbl": 6.125,
    "s": "héllo",
    "txt": "text " * 10,
    "ch": "abc",
    "b": True,
    "d": dt.date(2026, 12, 5),
    "ts": dt.datetime(2026, 12, 5, 17, 1, 2, 345678),
    "tstz": dt.datetime(2026, 12, 5, 17, 1, 2, tzinfo=dt.timezone.utc),
    "tm": dt.time(17, 1, 2),
    "iv": dt.timedelta(days=2, seconds=5),
    "js": {"a": [1, 2, {"b": None}]},
    "jb": {"k": "v", "n": 1.5},
    "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "u_str": "87654321-4321-8765-4321-876543218765",
    "bin": b"\x00\x01\xff",
    "arr": [1, 2, 3],
    "en": Colour.green,
    "inet": "10.1.2.3",
}
#: Every column NULL but the key.
EMPTY: dict[str, Any] = {c.name: None for c in types_table.columns} | {"id": 2}
