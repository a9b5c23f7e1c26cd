"""Keywords that cannot be a bare identifier on CockroachDB or PostgreSQL.

:class:`.compiler.CockroachDBIdentifierPreparer` quotes every name in
:data:`CRDB_RESERVED_WORDS` and :data:`PG_RESERVED_WORDS` (and SQLAlchemy's own
PostgreSQL list) on both servers: a table or column created on one server keeps
working on the other, and quoting a lower-case name never changes it.
"""

from __future__ import annotations

__all__ = ["CRDB_RESERVED_WORDS", "PG_RESERVED_WORDS"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Identifiers CockroachDB's own SQL formatter quotes: its reserved, type/function
# name and column name keywords (the generated map ``reservedKeywords`` in
# cockroach pkg/sql/lexbase/reserved_keywords.go
# @1b7dc4322298467b3e0dfba3f91b1cfdeaeb33ee, built from pkg/sql/parser/sql.y).
# ``role`` and ``view`` were reserved in older versions; quoting a name that is
# no longer a keyword is harmless.
CRDB_RESERVED_WORDS = _words(
    """
all analyse analyze and annotate_type any array as asc asymmetric authorization
between bigint bit boolean both box2d case cast char character characteristics check
coalesce cockroachdb_extra_reserved_keyword collate collation column concurrently
constraint create cross current_catalog current_date current_role current_schema
current_time current_timestamp current_user dec decimal default deferrable desc
distinct do else end except exists extract extract_duration false family fetch float
for foreign from full geography geometry grant greatest group grouping having if
iferror ifnull ilike in index initially inner int integer intersect interval into is
iserror isnull join lateral leading least left like limit localtime localtimestamp
natural none not nothing notnull null nullif numeric offset on only or order out
outer overlaps overlay placing point polygon position precision primary real
references returning right role row select session_user similar smallint some string
substring symmetric table then time timestamp timestamptz timetz to trailing treat
trim true union unique user using values varbit varchar variadic view virtual when
where window with work
"""
)

# PostgreSQL's reserved and type/function-name keywords (catcode R and T of
# pg_get_keywords(); https://www.postgresql.org/docs/15/sql-keywords-appendix.html).
# SQLAlchemy's RESERVED_WORDS lacks some of them (``lateral``, ``tablesample``).
PG_RESERVED_WORDS = _words(
    """
all analyse analyze and any array as asc asymmetric authorization binary both case
cast check collate collation column concurrently constraint create cross
current_catalog current_date current_role current_schema current_time
current_timestamp current_user default deferrable desc distinct do else end except
false fetch for foreign freeze from full grant group having ilike in initially inner
intersect into is isnull join lateral leading left like limit localtime
localtimestamp natural not notnull null offset on only or order outer overlaps
placing primary references returning right select session_user similar some
symmetric table tablesample then to trailing true union unique user using variadic
verbose when where window with
"""
)
