"""The sync API: ``run_transaction`` for a sync ``Engine`` or ``sessionmaker``.

This module is the public import path; the implementation lives in
:mod:`sqlalchemy_crdb_async.retry.sync`::

    from sqlalchemy_crdb_async.sync import ChainTransaction, run_transaction

Code written for the older ``sqlalchemy-cockroachdb`` changes only its import
(``from sqlalchemy_cockroachdb import run_transaction``, and
``sqlalchemy_cockroachdb.transaction.ChainTransaction``); its keywords
``max_retries``, ``max_backoff``, ``inject_error`` and ``use_cockroach_restart``
are accepted. See docs/migrating-from-sqlalchemy-cockroachdb.md.
"""

from __future__ import annotations

from .retry.sync import UNLIMITED_RETRIES_DEADLINE_S, ChainTransaction, run_transaction

__all__ = ["UNLIMITED_RETRIES_DEADLINE_S", "ChainTransaction", "run_transaction"]
