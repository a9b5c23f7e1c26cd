"""SQLAlchemy imports ``<package>.provision`` silently (an ImportError is
swallowed), so a broken module would quietly drop the compliance-suite hooks;
import it here where a failure shows."""

from __future__ import annotations

import importlib

from sqlalchemy.testing.provision import create_db, drop_db, temp_table_keyword_args


def test_provision_imports_and_registers_cockroachdb_hooks() -> None:
    module = importlib.import_module("sqlalchemy_crdb_async.dialect.provision")
    assert module.__name__ == "sqlalchemy_crdb_async.dialect.provision"
    for hook in (create_db, drop_db, temp_table_keyword_args):
        assert "cockroachdb" in hook.fns


def test_requirements_class_imports() -> None:
    from sqlalchemy_crdb_async.dialect.requirements import Requirements

    assert Requirements.__module__ == "sqlalchemy_crdb_async.dialect.requirements"


def test_dialect_load_provisioning_finds_our_module() -> None:
    from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg

    CockroachDBDialect_asyncpg.load_provisioning()
    assert "cockroachdb" in create_db.fns
