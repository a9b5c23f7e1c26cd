"""``python -m benchmarks --quick`` end to end against the test server.

Checks that the harness runs every workload and variant, writes its JSON and
plots, and that the bank conserved its money (the harness exits with 3 when
it does not). No timing is asserted: timings belong in the benchmark's own
report. Statement counting, which needs the server's log, is checked on its
own against the embedded server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from sqlalchemy_crdb_async.testing import TestServer

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = {
    "point_read",
    "insert_batch",
    "bank",
    "bank_hot",
    "checkout_storm",
    "pool_checkout",
    "fastapi_read",
    "fastapi_transfer",
    "fastapi_transfer_hot",
    # on a server with the VECTOR type (the embedded pgvector build here)
    "knn",
}
#: Scenarios that need nothing beyond this package's foundation.
ALWAYS = (
    {(w, "asyncpg") for w in WORKLOADS}
    | {
        (w, v)
        for w in ("point_read", "insert_batch", "checkout_storm", "pool_checkout")
        for v in ("sqlalchemy", "ours")
    }
    | {("bank", "sqlalchemy"), ("bank_hot", "sqlalchemy"), ("knn", "ours")}
    # The FastAPI module, its example and the raw-asyncpg reference in the same
    # app: FastAPI and httpx are in the test extra.
    | {
        (w, v)
        for w in ("fastapi_read", "fastapi_transfer", "fastapi_transfer_hot")
        for v in ("asyncpg-fastapi", "ours-fastapi")
    }
)


def assert_quick_label(stdout: str) -> None:
    """A quick run says "not for comparison" above its table, and every ratio
    in the table carries the mark that points there."""
    banner = stdout.index("not for comparison")
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert banner < stdout.index(table[0])
    ratio = table[0].split(" | ").index("ratio")
    ratios = [row.split(" | ")[ratio] for row in table[1:]]
    shown = [r.strip() for r in ratios if r.strip()[:1].isdigit()]
    assert shown  # the reference and the others ran
    assert all(r.endswith("*") for r in shown), shown


@pytest.mark.timeout(240)
def test_quick_run_end_to_end(crdb_server: TestServer, tmp_path: Path) -> None:
    for module in ("rich", "matplotlib", "tenacity"):
        pytest.importorskip(module, reason="needs the 'bench' extra")
    out = tmp_path / "out"
    url = crdb_server.url.render_as_string(hide_password=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--url",
            url,
            "--json",
            str(out / "results.json"),
            "--plot",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| workload | variant | API |" in proc.stdout
    assert_quick_label(proc.stdout)
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["quick"] is True
    summary = doc["summary"]
    assert {r["workload"] for r in summary} == WORKLOADS
    ran = [r for r in summary if r["status"] == "ok"]
    assert {(r["workload"], r["variant"]) for r in ran} >= ALWAYS
    for r in summary:
        assert r["status"] in ("ok", "unavailable"), r
        if r["status"] == "unavailable":
            assert r["reason"], r
    bank = [
        c
        for c in doc["cells"]
        if c["workload"] in ("bank", "bank_hot") and c["status"] == "ok"
    ]
    assert bank
    assert all(c["ops"] > 0 for c in bank), [c for c in bank if not c["ops"] > 0]
    # a bare retrying_session without lock-on-read may raise ReplayMismatchError
    # (counted, not retried); every other scenario retries until it commits
    failed = [c for c in bank if c["errors"] and not c["api"].endswith("no-lock")]
    assert not failed, failed
    for name in WORKLOADS:
        assert (out / f"{name}.png").stat().st_size > 0


async def test_statement_count_sees_the_pool_reset(
    crdb_server: TestServer, crdb_url: URL
) -> None:
    if crdb_server.embedded is None:
        pytest.skip("statement counting reads the embedded server's log")
    from benchmarks._harness.runner import connect_admin
    from benchmarks._harness.statements import count_statements, enable_statement_log
    from benchmarks.workloads import point_read

    admin = await connect_admin(crdb_url)
    try:
        await point_read.workload.setup(admin)
        await enable_statement_log(admin, str(crdb_url.database))
    finally:
        await admin.close()
    log = crdb_server.embedded.datadir.parent / "server.log"
    by_variant = {s.variant: s for s in point_read.workload.scenarios}
    # asyncpg's pool sends its reset query on every release; disabled, it does not.
    assert await count_statements(by_variant["asyncpg"], crdb_url, log) == 2.0
    assert await count_statements(by_variant["asyncpg-noreset"], crdb_url, log) == 1.0
