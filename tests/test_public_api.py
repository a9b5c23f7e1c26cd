"""``__all__`` is the public API: sorted, importable, complete."""

from __future__ import annotations

import inspect

import pytest

import sqlalchemy_crdb_async


def test_all_is_sorted_and_unique() -> None:
    names = list(sqlalchemy_crdb_async.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_exists() -> None:
    for name in sqlalchemy_crdb_async.__all__:
        assert hasattr(sqlalchemy_crdb_async, name), name


def test_every_public_class_and_function_is_in_all() -> None:
    public = {
        name
        for name, value in vars(sqlalchemy_crdb_async).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("sqlalchemy_crdb_async")
    }
    assert public <= set(sqlalchemy_crdb_async.__all__)


def test_exported_errors_show_the_public_module() -> None:
    for name in sqlalchemy_crdb_async.__all__:
        value = getattr(sqlalchemy_crdb_async, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert value.__module__ == "sqlalchemy_crdb_async", name


def test_version_matches_distribution() -> None:
    from importlib.metadata import version

    assert sqlalchemy_crdb_async.__version__ == version("sqlalchemy-crdb-async")


def test_sync_module_exports_the_older_packages_names() -> None:
    from sqlalchemy_crdb_async import sync

    assert {"ChainTransaction", "run_transaction"} <= set(sync.__all__)
    for name in sync.__all__:
        assert hasattr(sync, name), name


def test_fastapi_module_names() -> None:
    # An optional extra: not in the top-level __all__, its own public API.
    fastapi_module = pytest.importorskip(
        "sqlalchemy_crdb_async.fastapi", reason="needs the fastapi extra"
    )
    names = list(fastapi_module.__all__)
    assert names == sorted(names)
    assert set(names) == {
        "CLEANUP_TIMEOUT_S",
        "RetryingRoute",
        "answer_for",
        "connection_dependency",
        "retry_policy",
        "route_connection",
        "session_dependency",
    }
    for name in names:
        assert hasattr(fastapi_module, name), name


def test_vector_names_are_public() -> None:
    assert {
        "VECTOR",
        "VectorValueError",
        "set_vector_search_beam",
        "vector_dims",
        "vector_norm",
    } <= set(sqlalchemy_crdb_async.__all__)
    assert issubclass(sqlalchemy_crdb_async.VectorValueError, ValueError)


def test_fast_path_names() -> None:
    names = {"FastPathError", "PreparedParameterError", "PreparedQuery", "prepared"}
    assert names <= set(sqlalchemy_crdb_async.__all__)
    from sqlalchemy_crdb_async import fastpath

    assert set(fastpath.__all__) == {"PreparedQuery", "prepared"}
