"""The support window is enforced at first connect (dialect/server.py).

Server detection runs through the dialect's own ``_get_server_version_info``
with each recorded ``SELECT version()`` string of tests/crdb_facts/version.json
as the answer (a recorded CockroachDB answer, not a server).
"""

from __future__ import annotations

import warnings

import pytest

from sqlalchemy_crdb_async import (
    UnsupportedServerError,
    UnsupportedServerWarning,
    parse_server_version,
)
from sqlalchemy_crdb_async.dialect.asyncpg import CockroachDBDialect_asyncpg
from sqlalchemy_crdb_async.dialect.server import CONNECTABLE_SINCE, SUPPORTED_SINCE
from tests import facts
from tests.conformance.recording import Recorder

RECORDS = facts.load("version.json")["version_strings"]


def _detect(version_string: str) -> CockroachDBDialect_asyncpg:
    dialect = CockroachDBDialect_asyncpg()
    recorder = Recorder(dialect, lambda sql: [{"v": version_string, "s": "13.0.0"}])
    dialect.server_version_info = dialect._get_server_version_info(recorder)
    return dialect


def test_the_window_is_the_releases_supported_in_2026() -> None:
    # tests/crdb_facts/versions.md: v24.3 (LTS assistance until 2027-05-05) is
    # the oldest release Cockroach Labs supports at the end of 2026
    assert SUPPORTED_SINCE == (24, 3, 0)
    assert CONNECTABLE_SINCE == (22, 1, 0)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["label"])
def test_first_connect_refuses_warns_or_accepts(record: dict) -> None:
    version = record["version_string"]
    crdb = parse_server_version(version).crdb_version
    assert crdb is not None
    if crdb < CONNECTABLE_SINCE:
        with pytest.raises(UnsupportedServerError, match="Upgrade the cluster"):
            _detect(version)
    elif crdb < SUPPORTED_SINCE:
        with pytest.warns(UnsupportedServerWarning, match="no longer supported"):
            dialect = _detect(version)
        assert dialect.crdb_version == crdb  # the dialect carries on
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dialect = _detect(version)
        assert dialect.crdb_version == crdb


def test_postgresql_is_not_subject_to_the_window() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dialect = _detect("PostgreSQL 15.18 on x86_64-pc-linux-gnu")
    assert not dialect.is_cockroachdb
