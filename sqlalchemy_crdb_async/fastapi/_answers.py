"""The HTTP answer for a database error that ended a request (internal).

:func:`answer_for` maps the error a :class:`.RetryingRoute` gave up on to a
JSON response (the table is in :mod:`sqlalchemy_crdb_async.fastapi`), or
returns None: then the route re-raises the error for the app's exception
handlers. Bodies say what happened and what the client can do; they never
carry a stack trace, a statement or a parameter.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from starlette.responses import JSONResponse

from .. import sqlstate as codes
from ..errors import (
    AmbiguousCommitError,
    DeadlineExceededError,
    RetriesExhaustedError,
    is_connect_failure,
)

if TYPE_CHECKING:
    from ..retry.policy import RetryPolicy

__all__ = ["answer_for"]

log = logging.getLogger("sqlalchemy_crdb_async.fastapi")

#: ``Retry-After`` when the database cannot be reached, in seconds.
UNAVAILABLE_RETRY_AFTER_S = 1
#: What asyncpg raises, unwrapped, when it cannot connect: refused or reset,
#: an unknown host, a connect timeout.
_CONNECT_ERRORS = (ConnectionError, socket.gaierror, TimeoutError, asyncio.TimeoutError)

#: Answers by SQLSTATE class: (class, HTTP status, detail).
_BY_CLASS = (
    (
        codes.INTEGRITY_CONSTRAINT_VIOLATION_CLASS,
        409,
        "The request conflicts with the stored data (an integrity constraint "
        "was violated); nothing was written.",
    ),
    (
        codes.DATA_EXCEPTION_CLASS,
        422,
        "The data cannot be stored as asked (a value{where} is out of range or "
        "malformed); nothing was written.",
    ),
)
#: A data error on a request that only reads (GET, HEAD): nothing was to be
#: stored, so nothing is said about writing.
_DATA_ERROR_ON_READ = (
    "A value of the request{where} cannot be used as asked (out of range or "
    "malformed for the database); check the parameters."
)
_READ_METHODS = frozenset({"GET", "HEAD"})


def _json(
    status: int,
    detail: str,
    sqlstate: str | None,
    retry_after_s: int | None = None,
    field: str | None = None,
) -> JSONResponse:
    body: dict[str, str] = {"detail": detail}
    if sqlstate is not None:
        body["sqlstate"] = sqlstate
    if field is not None:
        body["field"] = field
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
    return JSONResponse(body, status_code=status, headers=headers)


def _unreachable(error: BaseException, sqlstate: str | None) -> bool:
    """The database could not be reached or refused the work for now."""
    if codes.is_connection_lost(sqlstate) or (sqlstate or "").startswith(
        codes.INSUFFICIENT_RESOURCES_CLASS
    ):
        return True
    if sqlstate in codes.TRANSIENT:  # CockroachDB: 58C00, 58C01 (and 53300)
        return True
    if isinstance(error, sa_exc.TimeoutError):  # the pool had no connection
        return True
    if is_connect_failure(error):  # refused, unanswered, or the login refused
        return True
    seen = 0
    item: BaseException | None = error
    while item is not None and seen < 8:  # the connect error may be wrapped
        if isinstance(item, _CONNECT_ERRORS):
            return True
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        item, seen = item.__cause__, seen + 1
    return False


#: SQLSTATE classes of a connect the server refused because the app's settings
#: are wrong: 28 (invalid authorization: a wrong password 28P01, an unknown
#: role 28000) and 3D (no such database).
_MISCONFIGURED_CLASSES = ("28", "3D")


def _one_line(error: BaseException) -> str:
    """The driver's message of ``error`` on one line, without SQLAlchemy's
    statement and background link."""
    inner = error.orig if isinstance(error, sa_exc.DBAPIError) else None
    shown = inner if isinstance(inner, BaseException) else error
    text = " ".join(str(shown).split())
    return f"{type(shown).__name__}: {text}" if text else type(shown).__name__


def _log_unavailable(error: BaseException, sqlstate: str | None) -> None:
    """One line per request (the traceback only at DEBUG): a database that is
    down would otherwise fill the log with the same chained traceback."""
    if sqlstate is not None and sqlstate.startswith(_MISCONFIGURED_CLASSES):
        log.error(
            "the database refused the app's connection (SQLSTATE %s): check the "
            "user, password and database name of the engine's URL; answered "
            "503: %s",
            sqlstate,
            _one_line(error),
        )
    else:
        log.warning("the database is unavailable; answered 503: %s", _one_line(error))
    log.debug("the error behind the 503", exc_info=error)


def answer_for(
    error: BaseException,
    policy: RetryPolicy | None = None,
    *,
    method: str | None = None,
) -> JSONResponse | None:
    """The answer to ``error``, or None when the app should handle it.

    ``policy`` sizes ``Retry-After`` after exhausted retries (its
    ``max_backoff_s``, rounded up, at least 1 s). ``method`` is the request's
    HTTP method: a data error (class 22) on a GET or HEAD is worded for a
    read. A 422 names the column when the server named one (also as
    ``"field"`` in the body).
    """
    found = codes.sqlstates_of(error)
    sqlstate = found[0] if found else None
    if isinstance(error, AmbiguousCommitError):
        log.warning("request ended with an ambiguous commit", exc_info=error)
        return JSONResponse(
            {
                "detail": "The outcome of the transaction is unknown: the "
                "connection was lost after COMMIT was sent, so it may or may not "
                "have committed. Retry the request with the same Idempotency-Key.",
                "outcome": "unknown",
                **({"sqlstate": sqlstate} if sqlstate else {}),
            },
            status_code=503,
        )
    last_retried = error.error if isinstance(error, DeadlineExceededError) else None
    if last_retried is not None and _unreachable(
        last_retried, next(iter(codes.sqlstates_of(last_retried)), None)
    ):
        error = last_retried  # the deadline passed retrying an unreachable server
    elif isinstance(error, DeadlineExceededError) and error.during_attempt:
        log.warning("request passed its retry deadline", exc_info=error)
        return _json(
            503,
            "The request did not finish within its deadline (the database was "
            "slow, or the work waited for a lock); nothing was committed. Retry "
            "later.",
            None,
            UNAVAILABLE_RETRY_AFTER_S,
        )
    last = error.__cause__ if isinstance(error, RetriesExhaustedError) else None
    if last is not None and _unreachable(last, sqlstate):
        # retries of a lost connection ran out: the database is unreachable,
        # not busy
        error = last
    elif isinstance(error, RetriesExhaustedError):
        log.warning("request gave up retrying", exc_info=error)
        wait_s = policy.max_backoff_s if policy is not None else 1.0
        return _json(
            503,
            f"The database is busy: the transaction conflicted with others "
            f"{error.attempts} times. Retry later.",
            sqlstate,
            max(1, math.ceil(wait_s)),
        )
    if _unreachable(error, sqlstate):
        _log_unavailable(error, sqlstate)
        return _json(
            503,
            "The database is unavailable. Retry later.",
            sqlstate,
            UNAVAILABLE_RETRY_AFTER_S,
        )
    if sqlstate is None:
        return None
    for sqlstate_class, status, detail in _BY_CLASS:
        if sqlstate.startswith(sqlstate_class):
            log.info("request answered %d", status, exc_info=error)
            column = _column_of(error)
            if status == 422 and (method or "").upper() in _READ_METHODS:
                detail = _DATA_ERROR_ON_READ
            detail = detail.format(where=f" (column {column})" if column else "")
            field = column if status == 422 else None
            return _json(status, detail, sqlstate, field=field)
    return None


def _column_of(error: BaseException) -> str | None:
    """The column the server named in its error (its ``column_name`` field),
    read from the driver error behind ``error``; None when it named none."""
    seen = 0
    todo: list[BaseException | None] = [error]
    while todo and seen < 16:
        item = todo.pop(0)
        if item is None:
            continue
        seen += 1
        column = getattr(item, "column_name", None)  # asyncpg
        if column is None:  # psycopg, psycopg2
            column = getattr(getattr(item, "diag", None), "column_name", None)
        if isinstance(column, str) and column:
            return column
        orig = getattr(item, "orig", None)
        todo.append(orig if isinstance(orig, BaseException) else None)
        todo.append(item.__cause__)
    return None
