"""What every ``@compiles`` function of the constructs shares (internal)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc

__all__ = ["DIALECT_NAME", "crdb_only", "is_crdb"]

DIALECT_NAME = "cockroachdb"


def is_crdb(compiler: Any) -> bool:
    """True when ``compiler`` compiles for a detected CockroachDB server."""
    return bool(getattr(compiler.dialect, "is_cockroachdb", False))


def crdb_only(what: str, instead: str) -> exc.CompileError:
    """The error a CockroachDB-only construct raises on PostgreSQL."""
    return exc.CompileError(
        f"{what} is CockroachDB-only and this server is PostgreSQL; {instead}"
    )
