"""The benchmark harness's pure parts: options, percentiles, the summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from benchmarks._harness.cli import build_parser, config_from
from benchmarks._harness.report import markdown, summarize
from benchmarks._harness.runner import CellResult, percentile
from benchmarks.workloads import all_workloads

if TYPE_CHECKING:
    from pathlib import Path


def test_bad_concurrency_says_what_is_wanted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--concurrency", "1,x"])
    assert exc.value.code == 2
    assert "positive integers separated by commas, such as 1,16,64" in (
        capsys.readouterr().err
    )


def test_quick_defaults_yield_to_explicit_options() -> None:
    args = build_parser().parse_args(["--quick", "--repeats", "2"])
    config = config_from(args)
    assert config.repeats == 2
    assert config.concurrency == (4,)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def _cell(variant: str, ops_per_s: float, repeat: int) -> CellResult:
    return CellResult(
        "bank", variant, "api", "label", 16, repeat, ops_per_s=ops_per_s,
        p50_ms=1.0, p99_ms=2.0, cpu_ms_per_op=0.5, retries_per_commit=0.1,
        sqlstates={"40001": 2},
    )  # fmt: skip


def test_summary_takes_medians_and_ratios_to_the_reference() -> None:
    cells = [_cell("ref", v, r) for r, v in enumerate((100.0, 300.0, 200.0))]
    cells += [_cell("other", v, r) for r, v in enumerate((50.0, 100.0, 150.0))]
    cells.append(
        CellResult("bank", "gone", "api", "label", 16, 0, status="unavailable",
                   reason="not installed")
    )  # fmt: skip
    rows = summarize(cells, {"bank": ("ref", "api")})
    by_variant = {r.variant: r for r in rows}
    assert by_variant["ref"].ops_per_s == 200.0
    assert by_variant["ref"].ratio == 1.0
    assert by_variant["other"].ratio == 0.5
    assert by_variant["other"].sqlstates == {"40001": 6}
    table = markdown(rows, ["a note"])
    assert "| bank | gone | api | 16 | unavailable (see below) |" in table
    assert table.rstrip().endswith("- a note")


def test_every_workload_has_one_reference_and_labels() -> None:
    for name, workload in all_workloads().items():
        # The FastAPI workloads' reference: the same endpoints on raw asyncpg
        # in the same app, so the ratio measures the library, not FastAPI.
        expected = "asyncpg-fastapi" if name.startswith("fastapi") else "asyncpg"
        assert workload.reference.variant == expected
        assert all(s.label for s in workload.scenarios)


def test_quick_table_marks_every_ratio_not_for_comparison() -> None:
    cells = [_cell("ref", 200.0, 0), _cell("other", 100.0, 0)]
    rows = summarize(cells, {"bank": ("ref", "api")})
    plain = markdown(rows)
    assert "not for comparison" not in plain
    assert "| 1.00 |" in plain
    quick = markdown(rows, quick=True)
    assert quick.startswith("**Quick run")
    assert "not for comparison" in quick.splitlines()[0]
    assert "| 1.00* |" in quick
    assert "| 0.50* |" in quick


def test_one_concurrency_is_drawn_as_bars(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the 'bench' extra")
    import matplotlib.pyplot as plt

    from benchmarks._harness import report

    cells = [_cell("ref", 200.0, 0), _cell("other", 100.0, 0)]
    rows = summarize(cells, {"bank": ("ref", "api")})
    drawn: list[Any] = []
    real_barh = plt.Axes.barh

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append(self)
        return real_barh(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt.Axes, "barh", spy)
        [path] = report.write_plots(tmp_path, rows, quick=True)
    assert path.stat().st_size > 0
    assert len(drawn) == 2  # throughput and p99, one bar per scenario each
    assert all("not for comparison" in ax.get_title() for ax in drawn)
