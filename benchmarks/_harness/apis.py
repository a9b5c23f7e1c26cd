"""This package's public names, looked up by name (the benchmarks' view of it).

Workloads and variants both ask here whether a helper exists in this checkout,
so neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["missing_api", "ours_api"]


def ours_api(name: str) -> Any:
    """A public name of ``sqlalchemy_crdb_async`` that a branch may not have yet.

    The retry helpers and ``PoolSettings`` were developed on their own
    branches; looked up by name, the benchmarks type-check and run
    with or without them (the scenarios that need them say so).
    """
    import sqlalchemy_crdb_async

    try:
        return getattr(sqlalchemy_crdb_async, name)
    except AttributeError:
        raise ImportError(
            f"cannot import name {name!r} from 'sqlalchemy_crdb_async'"
        ) from None


def missing_api(names: tuple[str, ...], what: str) -> str | None:
    """None when every name exists, else why the scenario cannot run."""
    import sqlalchemy_crdb_async

    missing = [n for n in names if not hasattr(sqlalchemy_crdb_async, n)]
    if not missing:
        return None
    return f"{what} not in this checkout: no {', '.join(missing)}"
