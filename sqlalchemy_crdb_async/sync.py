"""The sync API: ``run_transaction`` for a sync ``Engine`` or ``sessionmaker``.

This module is the public import path; the implementation lives in
:mod:`sqlalchemy_crdb_async.retry.sync`::

    from sqlalchemy_crdb_async.sync import run_transaction
"""

from __future__ import annotations

from .retry.sync import run_transaction

__all__ = ["run_transaction"]
