"""Golden tests: every error record in tests/crdb_facts/errors.json is classified right.

Each record's message is turned into the exception chain an application really
sees (asyncpg's exception class for the SQLSTATE, translated by SQLAlchemy's
asyncpg adapter, wrapped in ``sqlalchemy.exc.DBAPIError``) and classified.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from sqlalchemy_crdb_async import (
    AmbiguousCommitError,
    ErrorKind,
    ReplayMismatchError,
    RetriesExhaustedError,
    classify,
)
from sqlalchemy_crdb_async.retry.classify import classify_sqlstate, crdb_retry_reason
from tests import facts

if TYPE_CHECKING:
    from collections.abc import Iterator

DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)
MESSAGE_KEYS = ("message", "message_prefix", "message_prefix_only", "docs_snippet")
# Section name -> SQLSTATE of its records, where the records do not say.
SECTION_CODES = {
    "transaction_retry_errors_40001": "40001",
    "ambiguous_result_40003": "40003",
    "transaction_aborted_25P02": "25P02",
    "read_only_transaction_errors_25006": "25006",
    "unique_violation_23505": "23505",
    "schema_change_in_transaction_XXA00": "XXA00",
}
# Reasons named by an error type or helper, not a RETRY_/ABORT_REASON_ code.
REASON_NAMES = {
    "injected by inject_retry_errors_enabled": "inject_retry_errors_enabled",
    "crdb_internal.force_retry()": "crdb_internal.force_retry",
}
_CODE = re.compile(r"^([0-9A-Z]{5})\b")


def _code(value: Any) -> str | None:
    match = _CODE.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def _records() -> Iterator[tuple[str, str | None, str | None, str]]:
    """(where, sqlstate, expected reason, message) for every message record."""
    data = facts.load("errors.json")

    def walk(
        node: Any, where: str, code: str | None, reason: str | None
    ) -> Iterator[tuple[str, str | None, str | None, str]]:
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, f"{where}[{i}]", code, reason)
        elif isinstance(node, dict):
            code = _code(node.get("sqlstate")) or code
            if "reason" in node:
                reason = REASON_NAMES.get(node["reason"], node["reason"])
            for key in MESSAGE_KEYS:
                if isinstance(node.get(key), str):
                    yield f"{where}.{key}", code, reason, node[key]
            for key, value in node.items():
                if isinstance(value, (dict, list)):
                    yield from walk(value, f"{where}.{key}", code, reason)

    for section, body in data.items():
        if section in (
            "about",
            "general_rules",
            "retry_hint",
            "pgcodes_seen_in_source",
        ):
            continue
        code = next(
            (c for s, c in SECTION_CODES.items() if section.startswith(s)), None
        )
        if section.startswith("kv_error_formats"):
            for name, fmt in body["formats"].items():
                # KV errors reach clients inside a 40001 "restart transaction" error
                yield f"{section}.{name}", "40001", None, fmt
            continue
        yield from walk(body, section, code, None)


RECORDS = list(_records())


def as_sqlalchemy_error(
    code: str | None, message: str, routine: str | None = None
) -> sa_exc.DBAPIError:
    """The chain SQLAlchemy's asyncpg dialect raises for this server error."""
    fields = {"M": message}
    if code is not None:
        fields["C"] = code
    if routine is not None:
        fields["R"] = routine
    server_error = asyncpg.exceptions.PostgresError.new(fields)
    translate = DBAPI._asyncpg_error_translate
    cls = next(translate[c] for c in type(server_error).__mro__ if c in translate)
    try:
        adapted_error = cls(message, server_error)
    except TypeError:  # SQLAlchemy 2.0: message only, sqlstate set afterwards
        adapted_error = cls(message)
        adapted_error.pgcode = adapted_error.sqlstate = server_error.sqlstate
    try:
        raise adapted_error from server_error
    except DBAPI.Error as adapted:
        return sa_exc.DBAPIError.instance("SELECT 1", None, adapted, DBAPI.Error)
    raise AssertionError("unreachable")


def test_the_facts_have_records() -> None:
    sections = {where.split(".")[0].split("[")[0] for where, *_ in RECORDS}
    assert len(RECORDS) > 80
    assert "transaction_retry_errors_40001" in sections
    assert "ambiguous_result_40003" in sections


@pytest.mark.parametrize(
    ("where", "code", "reason", "message"), RECORDS, ids=[r[0] for r in RECORDS]
)
def test_every_errors_json_record_is_classified(
    where: str, code: str | None, reason: str | None, message: str
) -> None:
    error = as_sqlalchemy_error(code, message)
    before_commit = classify(error)
    at_commit = classify(error, commit_sent=True)
    assert before_commit.sqlstate == code
    if code == "40001":
        assert before_commit.kind is ErrorKind.RETRY
        assert at_commit.kind is ErrorKind.RETRY  # 40001 at COMMIT: not committed
        if reason is not None:
            assert before_commit.reason == reason, message
    elif code == "40003":
        assert before_commit.kind is ErrorKind.AMBIGUOUS
        assert at_commit.kind is ErrorKind.AMBIGUOUS
    elif code == "57P01":
        assert before_commit.kind is ErrorKind.RETRY
        assert before_commit.connection_lost
        assert at_commit.kind is ErrorKind.AMBIGUOUS
    else:
        assert before_commit.kind is ErrorKind.RAISE, (code, message)
        assert at_commit.kind is ErrorKind.RAISE


def test_server_shutdown_record_is_connection_loss() -> None:
    record = facts.load("errors.json")["server_shutdown_57P01"]
    drain = record["existing_connection_during_drain"]
    error = as_sqlalchemy_error(_code(drain["sqlstate"]), drain["message"])
    assert classify(error).kind is ErrorKind.RETRY
    assert classify(error, commit_sent=True).kind is ErrorKind.AMBIGUOUS


def test_every_pgcode_seen_in_cockroachdb_source() -> None:
    expected = {
        "40001": ErrorKind.RETRY,
        "40003": ErrorKind.AMBIGUOUS,
        "40000": ErrorKind.RAISE,
        "40002": ErrorKind.RAISE,
        "40P01": ErrorKind.RETRY,
        "57P01": ErrorKind.RETRY,
        "XXA00": ErrorKind.RAISE,  # committed: never run again
        "XXUUU": ErrorKind.RAISE,
    }
    codes = {
        k for k in facts.load("errors.json")["pgcodes_seen_in_source"] if k != "source"
    }
    assert codes == set(expected)
    for code, kind in expected.items():
        assert classify(as_sqlalchemy_error(code, "x")).kind is kind, code


def test_reason_codes_from_messages() -> None:
    assert (
        crdb_retry_reason(
            "restart transaction: TransactionRetryWithProtoRefreshError: "
            "TransactionAbortedError(ABORT_REASON_CLIENT_REJECT)"
        )
        == "ABORT_REASON_CLIENT_REJECT"
    )
    assert (
        crdb_retry_reason(
            "could not serialize access due to read/write dependencies "
            "among transactions"
        )
        is None
    )  # PostgreSQL's own 40001


def test_cached_plan_error_is_retried_after_clearing_the_cache() -> None:
    error = as_sqlalchemy_error(
        "0A000", "cached plan must not change result type", "RevalidateCachedQuery"
    )
    assert classify(error).kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR
    other = as_sqlalchemy_error("0A000", "unimplemented", "SomethingElse")
    assert classify(other).kind is ErrorKind.RAISE


def _cached_plan_record() -> dict[str, Any]:
    record: dict[str, Any] = facts.load("errors_more.json")["cached_plan"]
    return record


@pytest.mark.parametrize(
    "routine",
    [
        # newest CockroachDB, and PostgreSQL
        # (tests/crdb_facts/errors_more.json routine_field.newest)
        _cached_plan_record()["routine_field"]["newest"]["value"],
        # older releases: the Go function that built the error; the exact name
        # is not recorded, so any other name stands for it
        "someCockroachGoFunction",
        None,  # a driver that does not expose the routine field
    ],
)
def test_cached_plan_error_of_every_era_is_retried(routine: str | None) -> None:
    """The recorded 0A000 "cached plan must not change result type" is retried
    after clearing the cache, whatever the routine field says (Execute-phase
    up to v26.1, Bind-phase since v26.2: the same error to the driver)."""
    record = _cached_plan_record()
    error = as_sqlalchemy_error(record["sqlstate"], record["message"], routine)
    assert classify(error).kind is ErrorKind.RETRY_AFTER_CACHE_CLEAR
    assert (
        classify_sqlstate(
            record["sqlstate"], feature_message=record["message"], routine=routine
        ).kind
        is ErrorKind.RETRY_AFTER_CACHE_CLEAR
    )


def test_other_feature_not_supported_errors_are_raised() -> None:
    for item in facts.load("errors_more.json")["as_of_system_time"]:
        if item.get("sqlstate") == "0A000" and "message" in item:
            error = as_sqlalchemy_error("0A000", item["message"], "execStmtInOpenState")
            assert classify(error).kind is ErrorKind.RAISE


def test_disconnect_flag_and_connection_class_08() -> None:
    assert classify_sqlstate("08006").kind is ErrorKind.RETRY
    assert classify_sqlstate("08006", commit_sent=True).kind is ErrorKind.AMBIGUOUS
    assert classify_sqlstate(None, disconnect=True).connection_lost
    assert classify_sqlstate(None).kind is ErrorKind.RAISE


def test_our_errors_classify_for_an_enclosing_loop() -> None:
    cause = as_sqlalchemy_error("40001", "restart transaction: x")
    assert classify(ReplayMismatchError("m", cause)).kind is ErrorKind.RETRY
    assert classify(AmbiguousCommitError("a", cause)).kind is ErrorKind.AMBIGUOUS
    exhausted = RetriesExhaustedError("e", cause, 10)
    assert classify(exhausted).kind is ErrorKind.RAISE  # final, despite its 40001
    assert isinstance(exhausted, sa_exc.OperationalError)
    assert exhausted.orig is cause.orig


def test_plain_exceptions_are_raised() -> None:
    assert classify(ValueError("x")).kind is ErrorKind.RAISE
    assert classify(KeyError("40001")).kind is ErrorKind.RAISE
