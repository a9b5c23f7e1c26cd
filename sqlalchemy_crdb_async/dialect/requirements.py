"""What the server under test supports, for SQLAlchemy's and Alembic's suites.

The module name is fixed by convention: ``tests/compliance/test.cfg`` names
``sqlalchemy_crdb_async.dialect.requirements:Requirements`` as ``requirement_cls``.

Honesty rules for this file:

- A requirement is *opened* (``exclusions.open()``) only where both servers
  support it, or *gated* with :func:`_not_on_crdb` where only PostgreSQL does;
  every gate and every ``closed()`` carries a one-line reason and its source
  (a tests/crdb_facts/ file, a CockroachDB docs page or issue, or SQLAlchemy
  itself).
- Requirements left at SQLAlchemy's defaults are not repeated here.

The compliance suite normally runs against the embedded PostgreSQL (no
CockroachDB server exists in CI), where this dialect must behave exactly like
SQLAlchemy's PostgreSQL dialect; with ``CRDB_TEST_URL`` pointing at a
CockroachDB node the CockroachDB gates apply.
"""

from __future__ import annotations

from typing import Any

from alembic.testing.requirements import SuiteRequirements as AlembicRequirements
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements as SQLARequirements

__all__ = ["Requirements"]


def _is_crdb(config: Any) -> bool:
    return bool(getattr(config.db.dialect, "is_cockroachdb", False))


def _not_on_crdb(reason: str) -> Any:
    """Open on PostgreSQL; skipped on CockroachDB with ``reason``."""
    return exclusions.skip_if(_is_crdb, reason)


_OPEN = exclusions.open


class Requirements(SQLARequirements, AlembicRequirements):
    """SQLAlchemy's and Alembic's suite requirements for this dialect."""

    # -- transactions ------------------------------------------------------

    @property
    def async_dialect(self) -> Any:
        return _OPEN()  # the suite runs through cockroachdb+asyncpg

    @property
    def autocommit(self) -> Any:
        return _OPEN()  # AUTOCOMMIT on both (base.py get_isolation_level_values)

    @property
    def autocommit_isolation(self) -> Any:
        return _OPEN()

    @property
    def isolation_level(self) -> Any:
        return _OPEN()

    @property
    def savepoints(self) -> Any:
        # general savepoints since v20.1:
        # https://www.cockroachlabs.com/docs/v20.1/savepoint
        return _OPEN()

    @property
    def two_phase_transactions(self) -> Any:
        return _not_on_crdb(
            "CockroachDB has no PREPARE TRANSACTION "
            "(https://www.cockroachlabs.com/docs/stable/sql-feature-support)"
        )

    # -- DDL -----------------------------------------------------------------

    @property
    def schema_create_delete(self) -> Any:
        return _OPEN()

    @property
    def table_ddl_if_exists(self) -> Any:
        return _OPEN()

    @property
    def index_ddl_if_exists(self) -> Any:
        return _OPEN()

    @property
    def unicode_ddl(self) -> Any:
        return _OPEN()

    @property
    def server_defaults(self) -> Any:
        return _OPEN()

    @property
    def expression_server_defaults(self) -> Any:
        return _OPEN()

    @property
    def views(self) -> Any:
        return _OPEN()

    @property
    def create_or_replace_view(self) -> Any:
        return _OPEN()

    @property
    def temporary_views(self) -> Any:
        return _not_on_crdb(
            "temp objects need experimental_enable_temp_tables "
            "(tests/crdb_facts/pg_catalog_support.md section 1, pg_my_temp_schema)"
        )

    @property
    def has_temp_table(self) -> Any:
        return self.temporary_views

    @property
    def temp_table_names(self) -> Any:
        return self.temporary_views

    @property
    def create_table_as(self) -> Any:
        return _OPEN()

    @property
    def create_temp_table_as(self) -> Any:
        return self.temporary_views

    @property
    def materialized_views(self) -> Any:
        # https://www.cockroachlabs.com/docs/stable/views#materialized-views
        return _OPEN()

    @property
    def deferrable_fks(self) -> Any:
        return _not_on_crdb(
            "DEFERRABLE is unimplemented (tests/crdb_facts/session_vars.md section 2)"
        )

    @property
    def fk_deferrable(self) -> Any:
        return self.deferrable_fks

    @property
    def fk_initially(self) -> Any:
        return self.deferrable_fks

    @property
    def computed_columns(self) -> Any:
        return _OPEN()

    @property
    def computed_columns_stored(self) -> Any:
        return _OPEN()

    @property
    def computed_columns_default_persisted(self) -> Any:
        # SQLAlchemy's PG compiler writes STORED below server_version 18;
        # CockroachDB reports 13.0.0 (tests/crdb_facts/version.json server_version)
        return exclusions.skip_if(
            lambda config: config.db.dialect.server_version_info >= (18,),
            "PostgreSQL 18 makes an unflagged computed column VIRTUAL",
        )

    @property
    def computed_columns_reflect_persisted(self) -> Any:
        return _OPEN()

    @property
    def identity_columns(self) -> Any:
        return _OPEN()  # tests/crdb_facts/information_schema_columns.json identity_v25

    @property
    def identity_columns_standard(self) -> Any:
        return _OPEN()

    @property
    def identity_columns_alter(self) -> Any:
        return _OPEN()

    # -- reflection ----------------------------------------------------------

    @property
    def check_constraint_reflection(self) -> Any:
        return _OPEN()

    @property
    def inline_check_constraint_reflection(self) -> Any:
        return _OPEN()

    @property
    def column_collation_reflection(self) -> Any:
        return _not_on_crdb(
            "collations are part of crdb_sql_type, not pg_collation rows "
            "(tests/crdb_facts/information_schema_columns.json data_types, dl)"
        )

    @property
    def comment_reflection(self) -> Any:
        return _OPEN()  # COMMENT ON: tests/crdb_facts/session_vars.md section 6

    @property
    def comment_reflection_full_unicode(self) -> Any:
        return _OPEN()

    @property
    def constraint_comment_reflection(self) -> Any:
        return _OPEN()

    @property
    def cross_schema_fk_reflection(self) -> Any:
        return _OPEN()

    @property
    def foreign_key_constraint_name_reflection(self) -> Any:
        return _OPEN()

    @property
    def foreign_key_constraint_option_reflection_ondelete(self) -> Any:
        return _OPEN()

    @property
    def foreign_key_constraint_option_reflection_onupdate(self) -> Any:
        return _OPEN()

    @property
    def fk_constraint_option_reflection_ondelete_restrict(self) -> Any:
        return _OPEN()

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self) -> Any:
        return _OPEN()

    @property
    def fk_constraint_option_reflection_onupdate_restrict(self) -> Any:
        return _OPEN()

    @property
    def fk_ondelete_is_reflected(self) -> Any:
        return _OPEN()

    @property
    def fk_onupdate_is_reflected(self) -> Any:
        return _OPEN()

    @property
    def reflects_fk_options(self) -> Any:
        return _OPEN()

    @property
    def reflects_pk_names(self) -> Any:
        return _OPEN()

    @property
    def index_reflects_included_columns(self) -> Any:
        return _not_on_crdb(
            "CockroachDB has STORING, reflected as cockroachdb_storing "
            "(tests/crdb_facts/indexes.json pg_indexes)"
        )

    @property
    def unique_constraints_reflect_as_index(self) -> Any:
        return _OPEN()  # a UNIQUE constraint is a unique index (pg_constraint conindid)

    @property
    def reflect_table_options(self) -> Any:
        # PostgreSQL's get_multi_table_options (renamed cockroachdb_*) is new in
        # SQLAlchemy 2.1; 2.0 raises NotImplementedError, as the suite expects.
        return exclusions.skip_if(
            lambda config: "get_multi_table_options" not in PGDialect.__dict__,
            "SQLAlchemy 2.0's PostgreSQL dialect does not reflect table options",
        )

    @property
    def indexes_with_expressions(self) -> Any:
        return _OPEN()

    @property
    def reflect_indexes_with_expressions(self) -> Any:
        return _OPEN()

    @property
    def reflect_tables_no_columns(self) -> Any:
        return _not_on_crdb(
            "every CockroachDB table has a primary key column (hidden rowid) "
            "(tests/crdb_facts/information_schema_columns.json smallbig_rowid)"
        )

    @property
    def default_schema_name_switch(self) -> Any:
        return _OPEN()

    @property
    def percent_schema_names(self) -> Any:
        return _OPEN()

    # -- types ---------------------------------------------------------------

    @property
    def array_type(self) -> Any:
        return _OPEN()

    @property
    def json_type(self) -> Any:
        return _OPEN()

    @property
    def uuid_data_type(self) -> Any:
        return _OPEN()

    @property
    def datetime_timezone(self) -> Any:
        return _OPEN()

    @property
    def time_timezone(self) -> Any:
        return _OPEN()

    @property
    def datetime_literals(self) -> Any:
        return _OPEN()

    @property
    def datetime_interval(self) -> Any:
        return _OPEN()

    @property
    def date_historic(self) -> Any:
        return _OPEN()

    @property
    def datetime_historic(self) -> Any:
        return _OPEN()

    @property
    def datetime_timezone_historic(self) -> Any:
        return _OPEN()

    @property
    def timestamp_microseconds(self) -> Any:
        return _OPEN()

    @property
    def infinity_floats(self) -> Any:
        return _OPEN()

    @property
    def precision_numerics_enotation_small(self) -> Any:
        return _OPEN()

    @property
    def precision_numerics_many_significant_digits(self) -> Any:
        return _OPEN()

    @property
    def precision_numerics_retains_significant_digits(self) -> Any:
        return _OPEN()

    # -- SQL -----------------------------------------------------------------

    @property
    def aggregate_order_by(self) -> Any:
        return _OPEN()

    @property
    def boolean_col_expressions(self) -> Any:
        return _OPEN()

    @property
    def ctes(self) -> Any:
        return _OPEN()

    @property
    def ctes_on_dml(self) -> Any:
        return _OPEN()

    @property
    def ctes_with_update_delete(self) -> Any:
        return _OPEN()

    @property
    def ctes_with_values(self) -> Any:
        return _OPEN()

    @property
    def delete_from(self) -> Any:
        return _OPEN()

    @property
    def update_from(self) -> Any:
        return _OPEN()

    @property
    def except_(self) -> Any:
        return _OPEN()

    @property
    def intersect(self) -> Any:
        return _OPEN()

    @property
    def fetch_first(self) -> Any:
        return _OPEN()

    @property
    def fetch_expression(self) -> Any:
        return _OPEN()

    @property
    def fetch_no_order_by(self) -> Any:
        return _OPEN()

    @property
    def fetch_offset_with_options(self) -> Any:
        return _OPEN()

    @property
    def fetch_ties(self) -> Any:
        return _not_on_crdb(
            "WITH TIES is not in CockroachDB's LIMIT/FETCH docs "
            "(https://www.cockroachlabs.com/docs/stable/limit-offset)"
        )

    @property
    def mod_operator_as_percent_sign(self) -> Any:
        return _OPEN()

    @property
    def nullsordering(self) -> Any:
        return _OPEN()

    @property
    def order_by_label_with_expression(self) -> Any:
        return _OPEN()

    @property
    def regexp_match(self) -> Any:
        return _OPEN()

    @property
    def regexp_replace(self) -> Any:
        return _OPEN()

    @property
    def supports_distinct_on(self) -> Any:
        return _OPEN()

    @property
    def supports_bitwise_and(self) -> Any:
        return _OPEN()

    @property
    def supports_bitwise_or(self) -> Any:
        return _OPEN()

    @property
    def supports_bitwise_xor(self) -> Any:
        return _OPEN()

    @property
    def supports_bitwise_not(self) -> Any:
        return _not_on_crdb(
            "unary ~ has a different precedence on CockroachDB "
            "(https://www.cockroachlabs.com/docs/v24.3/postgresql-compatibility)"
        )

    @property
    def supports_bitwise_shift(self) -> Any:
        return _OPEN()

    @property
    def table_value_constructor(self) -> Any:
        return _OPEN()

    @property
    def tuple_in(self) -> Any:
        return _OPEN()

    @property
    def window_functions(self) -> Any:
        return _OPEN()

    @property
    def window_range(self) -> Any:
        # RANGE frames with offsets (https://www.cockroachlabs.com/docs/stable/window-functions)
        return _OPEN()

    @property
    def window_range_numeric(self) -> Any:
        return _OPEN()

    @property
    def window_range_non_numeric(self) -> Any:
        return _OPEN()

    @property
    def indexes_check_column_order(self) -> Any:
        return _OPEN()

    @property
    def float_or_double_precision_behaves_generically(self) -> Any:
        return _OPEN()

    @property
    def skip_autocommit_rollback(self) -> Any:
        return _OPEN()  # asyncpg's dialect detects autocommit (SQLAlchemy asyncpg.py)

    @property
    def temp_table_comment_reflection(self) -> Any:
        return self.temporary_views

    @property
    def fk_deferrable_is_reflected(self) -> Any:
        return self.deferrable_fks

    def get_order_by_collation(self, config: Any) -> str:
        # PostgreSQL always has POSIX; CockroachDB names ICU locales
        # (tests/crdb_facts/information_schema_columns.json data_types, COLLATE en)
        return "en" if _is_crdb(config) else "POSIX"

    # -- closed, with the reason -----------------------------------------------

    @property
    def legacy_unconditional_json_extract(self) -> Any:
        return exclusions.closed(
            "a SQLite/MySQL-only legacy JSON_EXTRACT behaviour "
            "(SQLAlchemy SuiteRequirements docstring)"
        )

    @property
    def nvarchar_types(self) -> Any:
        return exclusions.closed("no NCHAR/NVARCHAR types on PostgreSQL or CockroachDB")

    @property
    def fetch_percent(self) -> Any:
        return exclusions.closed("FETCH FIRST ... PERCENT: not PostgreSQL syntax")

    @property
    def dbapi_lastrowid(self) -> Any:
        return exclusions.closed(
            "asyncpg has no cursor.lastrowid; SQLAlchemy's PostgreSQL dialects use "
            "RETURNING"
        )

    @property
    def autoincrement_on_composite_pk(self) -> Any:
        return exclusions.closed(
            "SQLAlchemy renders SERIAL only for a single-column integer primary key "
            "(PGDDLCompiler.get_column_specification)"
        )

    @property
    def repeated_column_foreign_keys(self) -> Any:
        return _OPEN()

    @property
    def repeated_remote_col_foreign_keys(self) -> Any:
        return exclusions.closed(
            "PostgreSQL: 'foreign key referenced-columns list must not contain "
            "duplicates' (SQLSTATE 42830)"
        )
