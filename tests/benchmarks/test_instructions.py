"""``python -m benchmarks.instructions``: each suite's in-process measuring
function against the test server, without valgrind.

Under valgrind the measuring function calls ``callgrind_control`` around its
windows; here a recording ``control`` stands in, so the suite's requests and
reads run for real and the windows' names are checked against the dump
reader. No count or timing is asserted: those are the benchmark's report.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import asyncpg
import pytest

from benchmarks import instructions
from benchmarks.workloads._fastapi import START_BALANCE

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import URL

WINDOWS = (2, 5)
WARMUP = 3


def _plain(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _count(suite: instructions.Suite, crdb_url: URL) -> list[tuple[str, ...]]:
    """Run ``suite`` in process with short windows; check and return the
    ``callgrind_control`` calls it made: instructions on, a zeroing and a
    named dump around every window of every (op, kind), instructions off,
    each name parsing back to its window."""
    url = _plain(crdb_url)
    await suite.prepare(url)
    calls: list[tuple[str, ...]] = []
    await suite.count_at(
        url, lambda *a: calls.append(a), warmup=WARMUP, windows=WINDOWS
    )
    assert calls[0] == ("-i", "on")
    assert calls[-1] == ("-i", "off")
    windows = calls[1:-1]
    assert all(z == ("-z",) for z in windows[::2]), windows
    names = [d[1] for d in windows[1::2]]
    assert all(d[0] == "-d" for d in windows[1::2]), windows
    assert [instructions.window_key(n) for n in names] == [
        (op, kind, n) for op in suite.ops for kind in suite.kinds for n in WINDOWS
    ]
    return calls


def _write_dumps(out_dir: Path, names: list[str], count: dict[int, int]) -> None:
    """Files shaped as the dump reader reads callgrind's: the dump's name in
    ``desc: Trigger: dump NAME``, the total in ``summary: N``."""
    for i, name in enumerate(names):
        n = instructions.window_key(name)[2]
        (out_dir / f"callgrind.out.1.{i + 1}").write_text(
            f"version: 1\ncreator: callgrind\ncmd: python\n"
            f"desc: Trigger: dump {name}\nevents: Ir\nsummary: {count[n]}\n"
        )


async def test_http_suite_runs_its_requests_in_named_windows(
    crdb_url: URL, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi", reason="the FastAPI example app needs FastAPI")
    pytest.importorskip("httpx", reason="the http suite drives the app with httpx")
    suite = instructions.SUITES["http"]
    calls = await _count(suite, crdb_url)
    conn = await asyncpg.connect(_plain(crdb_url))
    try:
        transfers = await conn.fetchval("SELECT count(*) FROM bank_transfers")
        total = await conn.fetchval("SELECT sum(balance) FROM bank_accounts")
        keys = await conn.fetchval(
            "SELECT count(DISTINCT idempotency_key) FROM bank_transfers"
        )
    finally:
        await conn.close()
    # every transfer request of both kinds committed once, with its own key
    expected = len(suite.kinds) * (WARMUP + sum(WINDOWS))
    assert transfers == keys == expected
    assert Decimal(total) == START_BALANCE * instructions.ACCOUNTS
    # the dump reader finds every window by the names the suite gave them
    names = [c[1] for c in calls if c[0] == "-d"]
    _write_dumps(tmp_path, names, {2: 1_000, 5: 4_000})
    per_op = instructions._read_dumps(str(tmp_path), suite)
    assert per_op == {(op, kind): 1_000.0 for op in suite.ops for kind in suite.kinds}


async def test_point_read_suite_runs_in_named_windows(crdb_url: URL) -> None:
    await _count(instructions.SUITES["point_read"], crdb_url)


async def test_http_suite_needs_and_sets_serializable(crdb_url: URL) -> None:
    """Off SERIALIZABLE by default the suite refuses to measure, and its
    preparation puts the database back on it."""
    pytest.importorskip("fastapi", reason="the FastAPI example app needs FastAPI")
    suite = instructions.SUITES["http"]
    url = _plain(crdb_url)
    database = f'"{crdb_url.database}"'
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(
            f"ALTER DATABASE {database} SET default_transaction_isolation "
            "= 'read committed'"
        )
        with pytest.raises(RuntimeError, match=r"'read committed'.*SERIALIZABLE"):
            await suite.count_at(url, lambda *a: None, warmup=1, windows=WINDOWS)
        await suite.prepare(url)
        conn = await asyncpg.connect(url)
        try:
            shown = await conn.fetchval("SHOW default_transaction_isolation")
        finally:
            await conn.close()
        assert shown == "serializable"
    finally:
        await admin.execute(
            f"ALTER DATABASE {database} RESET default_transaction_isolation"
        )
        await admin.close()


def test_dump_reader_names_a_missing_window(tmp_path: Path) -> None:
    suite = instructions.SUITES["http"]
    _write_dumps(tmp_path, ["read-raw-2", "read-raw-5", "read-fast-5"], {2: 1, 5: 2})
    with pytest.raises(RuntimeError, match="two windows of transfer on raw"):
        instructions._read_dumps(str(tmp_path), suite)


def test_suite_option_refuses_an_unknown_suite(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        instructions.main(["--suite", "htpp"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--suite" in err
    assert "invalid choice" in err
    assert "htpp" in err
    assert "point_read" in err
    assert "http" in err
