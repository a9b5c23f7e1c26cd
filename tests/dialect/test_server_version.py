"""Server detection parses every real version string (tests/crdb_facts/version.json)."""

from __future__ import annotations

import pytest

from sqlalchemy_crdb_async import UnrecognizedServerError, parse_server_version
from tests import facts

VERSION_FACTS = facts.load("version.json")
PARSED_KEY = "parsed_by_regex_below (derived, not from source)"


@pytest.mark.parametrize(
    "record", VERSION_FACTS["version_strings"], ids=lambda r: r["label"]
)
def test_every_golden_crdb_version_string_parses(record: dict) -> None:
    expected = record[PARSED_KEY]
    info = parse_server_version(record["version_string"])
    assert info.flavor == "cockroachdb"
    assert info.is_cockroachdb
    assert info.crdb_version == (
        expected["major"],
        expected["minor"],
        expected["patch"],
    )
    assert info.prerelease == (expected["suffix"] or "")
    assert info.version_string == record["version_string"]


def test_golden_set_is_not_empty() -> None:
    assert len(VERSION_FACTS["version_strings"]) >= 40


@pytest.mark.parametrize(
    ("server_version", "expected"),
    [("13.0.0", (13, 0, 0)), ("9.5.0", (9, 5, 0)), ("18.0.0", (18, 0, 0))],
)
def test_crdb_pg_version_comes_from_server_version(
    server_version: str, expected: tuple[int, ...]
) -> None:
    info = parse_server_version(
        "CockroachDB CCL v25.2.2 (x86_64-pc-linux-gnu, built 2025/06/23 13:45:25, "
        "go1.23.7 X:nocoverageredesign)",
        server_version,
    )
    assert info.pg_version == expected
    assert info.describe() == "CockroachDB 25.2.2"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        # server_version history: 9.5.0 before v21.1, 13.0.0 since
        # (tests/crdb_facts/version.json "server_version").
        (
            "CockroachDB CCL v20.2.7 (x86_64-unknown-linux-gnu, built x, go1.13)",
            (9, 5, 0),
        ),
        (
            "CockroachDB CCL v21.1.0 (x86_64-unknown-linux-gnu, built x, go1.15)",
            (13, 0, 0),
        ),
    ],
)
def test_crdb_pg_version_falls_back_by_release(
    version: str, expected: tuple[int, ...]
) -> None:
    assert parse_server_version(version).pg_version == expected


def test_partial_crdb_string_parses() -> None:
    (partial,) = VERSION_FACTS["partial_strings"]
    info = parse_server_version(partial["string"])
    assert info.crdb_version == (20, 1, 0)


@pytest.mark.parametrize(
    ("version", "expected", "prerelease"),
    [
        (
            "PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu, "
            "compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit",
            (15, 18),
            "",
        ),
        (
            "PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 13.2.1 "
            "20240316 (Red Hat 13.2.1-7), 64-bit",
            (16, 4),
            "",
        ),
        (
            "PostgreSQL 18.1 (Ubuntu 18.1-1.pgdg24.04+2) on aarch64-unknown-linux-gnu, "
            "compiled by gcc (Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0, 64-bit",
            (18, 1),
            "",
        ),
        ("PostgreSQL 18beta1 on x86_64-pc-linux-gnu, compiled by gcc", (18,), "beta1"),
        ("PostgreSQL 17devel on x86_64-pc-linux-gnu", (17,), "devel"),
        ("PostgreSQL 9.6.24 on x86_64-pc-linux-gnu", (9, 6, 24), ""),
    ],
)
def test_postgresql_version_strings(
    version: str, expected: tuple[int, ...], prerelease: str
) -> None:
    info = parse_server_version(version)
    assert info.flavor == "postgresql"
    assert not info.is_cockroachdb
    assert info.crdb_version is None
    assert info.pg_version == expected
    assert info.prerelease == prerelease


@pytest.mark.parametrize(
    "version",
    [
        "",
        "MySQL 8.0.36",
        "CockroachDB v25.4.1",  # no distribution
        "YugabyteDB-like 11.2-YB-2.20.0.0-b0",
        *(r["string"] for r in VERSION_FACTS["rejected_strings"][:1]),
    ],
)
def test_unrecognized_version_raises_and_quotes_it(version: str) -> None:
    with pytest.raises(UnrecognizedServerError) as info:
        parse_server_version(version)
    assert repr(version.strip()) in str(info.value)
