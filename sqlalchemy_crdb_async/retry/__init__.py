"""Transaction retries: CockroachDB's SQLSTATE 40001 made invisible.

Where each part lives:

==================  =============================================================
module              what it does
==================  =============================================================
``policy``          :class:`RetryPolicy`: attempts, deadline, backoff and jitter
``classify``        :func:`classify`: an error to retry / ambiguous / raise, by
                    SQLSTATE
``helpers``         :func:`run_transaction` and :func:`retrying` (async)
``replay``          :func:`retrying_session` (the body runs once; statements
                    replayed)
``sync``            ``run_transaction`` for a sync ``Engine`` / ``sessionmaker``
``stats``           :func:`retry_stats`, :class:`RetryEvent`, OpenTelemetry events
``_loop``           the attempt loop every helper shares
``_admission``      the contention-adaptive admission gate (per engine)
``_claims``         :func:`claim_keys`: attempts that name their hot rows queue
                    for them in process, outside the gate
``_scopes``         one attempt's transaction per kind of target
``_admission``      the contention-adaptive gate on transactions in flight
``_lock_on_read``   ``FOR UPDATE`` on a retrying session's plain reads
``_deadline``       the deadline of a call: the timer that cancels an attempt,
                    the cleanup bound, the sync helper's statement_timeout
``_fingerprint``    the hash of a result that a replay compares
``_context``        what ``retrying_session`` returns (``async with`` only)
==================  =============================================================
"""

from __future__ import annotations

from ._claims import claim_keys
from .classify import Classification, ErrorKind, classify
from .helpers import Attempt, retrying, run_transaction
from .policy import RetryPolicy
from .replay import retrying_session
from .stats import RetryEvent, RetryStats, retry_stats

__all__ = [
    "Attempt",
    "Classification",
    "ErrorKind",
    "RetryEvent",
    "RetryPolicy",
    "RetryStats",
    "claim_keys",
    "classify",
    "retry_stats",
    "retrying",
    "retrying_session",
    "run_transaction",
]
