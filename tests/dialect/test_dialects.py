"""Each URL scheme resolves to this package's dialect, sync and async."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine
from sqlalchemy.dialects import registry
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import create_async_engine

import sqlalchemy_crdb_async
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.base import CockroachDBDialect
from sqlalchemy_crdb_async.dialect.psycopg import (
    CockroachDBDialect_psycopg,
    CockroachDBDialectAsync_psycopg,
)
from sqlalchemy_crdb_async.dialect.psycopg2 import CockroachDBDialect_psycopg2

if TYPE_CHECKING:
    from pathlib import Path

SYNC = {
    "cockroachdb://root@h:26257/db": CockroachDBDialect_psycopg2,
    "cockroachdb+psycopg2://root@h:26257/db": CockroachDBDialect_psycopg2,
    "cockroachdb+psycopg://root@h:26257/db": CockroachDBDialect_psycopg,
}
ASYNC = {
    "cockroachdb://root@h:26257/db": CockroachDBDialect_asyncpg,
    "cockroachdb+asyncpg://root@h:26257/db": CockroachDBDialect_asyncpg,
    "cockroachdb+psycopg://root@h:26257/db": CockroachDBDialectAsync_psycopg,
    "cockroachdb+psycopg_async://root@h:26257/db": CockroachDBDialectAsync_psycopg,
}


@pytest.mark.parametrize(("url", "cls"), SYNC.items())
def test_create_engine_scheme(url: str, cls: type) -> None:
    engine = create_engine(url)
    assert type(engine.dialect) is cls
    assert engine.dialect.name == "cockroachdb"
    assert isinstance(engine.dialect, CockroachDBDialect)


@pytest.mark.parametrize(("url", "cls"), ASYNC.items())
def test_create_async_engine_scheme(url: str, cls: type) -> None:
    engine = create_async_engine(url)
    assert type(engine.dialect) is cls
    assert engine.dialect.is_async
    assert engine.dialect.name == "cockroachdb"


def test_explicit_psycopg2_is_not_async() -> None:
    # The message and its fixes: tests/dialect/test_connect_errors.py.
    with pytest.raises(InvalidRequestError, match="synchronous driver"):
        create_async_engine("cockroachdb+psycopg2://root@h/db")


def test_dialects_are_registered_explicitly() -> None:
    # registry.impls holds explicit registrations, consulted before entry points.
    for name, module, cls in sqlalchemy_crdb_async.DIALECTS:
        loaded = registry.load(name)
        assert loaded.__module__ == module
        assert loaded.__name__ == cls
        assert name in registry.impls


def test_entry_points_are_declared() -> None:
    from importlib.metadata import entry_points

    ours = {
        ep.name: ep.value
        for ep in entry_points(group="sqlalchemy.dialects")
        if ep.value.startswith("sqlalchemy_crdb_async.")
    }
    assert ours == {
        name: f"{module}:{cls}" for name, module, cls in sqlalchemy_crdb_async.DIALECTS
    }


def test_pytest_plugin_entry_point() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "crdb_async"]
    assert ep.value == "sqlalchemy_crdb_async.testing.plugin"


def _run_import(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import sqlalchemy_crdb_async
        for w in caught:
            print(type(w.message).__name__, "|", w.message)
        from sqlalchemy import create_engine
        print("dialect", type(create_engine("cockroachdb+asyncpg://u@h/d").dialect))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


def test_other_dialect_installed_warns_once_and_we_stay_active(tmp_path: Path) -> None:
    # A real distribution record, found by importlib.metadata on sys.path.
    dist = tmp_path / "sqlalchemy_cockroachdb-2.0.4.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sqlalchemy-cockroachdb\nVersion: 2.0.4\n"
    )
    (dist / "entry_points.txt").write_text(
        "[sqlalchemy.dialects]\n"
        "cockroachdb.asyncpg = "
        "sqlalchemy_cockroachdb.asyncpg:CockroachDBDialect_asyncpg\n"
    )
    out = _run_import(tmp_path).stdout
    lines = [line for line in out.splitlines() if line.startswith("DialectConflict")]
    assert len(lines) == 1
    assert "sqlalchemy-cockroachdb 2.0.4" in lines[0]
    assert "sqlalchemy-crdb-async is the active dialect" in lines[0]
    assert "sqlalchemy_crdb_async.dialect.asyncpg.CockroachDBDialect_asyncpg" in out


def test_no_warning_without_the_other_package(tmp_path: Path) -> None:
    out = _run_import(tmp_path).stdout
    assert "DialectConflict" not in out
