"""The report: medians over repeats as a markdown table, all cells as JSON, plots.

:func:`summarize` groups the cells by (workload, variant, API, concurrency)
and takes the median of each measure over the repeats; ``ratio`` is the
median throughput divided by the reference scenario's (raw asyncpg) in the
same workload at the same concurrency. SQLSTATE counts are summed over the
repeats. :func:`markdown` renders the summary, :func:`write_json` writes every
cell plus the summary and the run's metadata, :func:`write_plots` draws one
PNG per workload: throughput and p99 latency by concurrency, a line per
scenario (bars per scenario when only one concurrency was measured). A quick
run's table and plots say "not for comparison".
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from .runner import CellResult

__all__ = ["SummaryRow", "markdown", "summarize", "write_json", "write_plots"]


@dataclass
class SummaryRow:
    workload: str
    variant: str
    api: str
    label: str
    concurrency: int
    repeats: int
    status: str
    reason: str | None = None
    ops_per_s: float | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_op: float | None = None
    statements_per_op: float | None = None
    retries_per_commit: float | None = None
    sqlstates: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def scenario(self) -> str:
        return f"{self.variant} {self.api}"


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(
    cells: Sequence[CellResult],
    references: dict[str, tuple[str, str]],
    statements: dict[tuple[str, str, str], float | None] | None = None,
) -> list[SummaryRow]:
    """Median rows in the order cells first appear; see the module docstring."""
    groups: dict[tuple[str, str, str, int], list[CellResult]] = defaultdict(list)
    for c in cells:
        groups[(c.workload, c.variant, c.api, c.concurrency)].append(c)
    rows: list[SummaryRow] = []
    for (workload, variant, api, conc), group in groups.items():
        ok = [c for c in group if c.status == "ok"]
        first = group[0]
        row = SummaryRow(workload, variant, api, first.label, conc, len(ok), "ok")
        if not ok:
            row.status = first.status
            row.reason = first.reason
            rows.append(row)
            continue
        row.ops_per_s = _median(c.ops_per_s for c in ok)
        row.p50_ms = _median(c.p50_ms for c in ok)
        row.p99_ms = _median(c.p99_ms for c in ok)
        row.cpu_ms_per_op = _median(c.cpu_ms_per_op for c in ok)
        row.retries_per_commit = _median(c.retries_per_commit for c in ok)
        row.sqlstates = dict(sum((Counter(c.sqlstates) for c in ok), Counter()))
        row.errors = sum(c.errors for c in group)
        if len(ok) < len(group):
            bad = next(c for c in group if c.status != "ok")
            row.reason = f"{len(group) - len(ok)} repeat(s) failed: {bad.reason}"
        if statements is not None:
            row.statements_per_op = statements.get((workload, variant, api))
        rows.append(row)
    by_key = {(r.workload, r.variant, r.api, r.concurrency): r for r in rows}
    for r in rows:
        ref_variant, ref_api = references[r.workload]
        ref = by_key.get((r.workload, ref_variant, ref_api, r.concurrency))
        if ref and ref.ops_per_s and r.ops_per_s is not None:
            r.ratio = r.ops_per_s / ref.ops_per_s
    return rows


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


#: Above a quick run's table, and as the mark on each of its ratios.
QUICK_BANNER = (
    "**Quick run (--quick): one short repeat per cell, a smoke test. Its "
    "numbers and ratios (marked *) are not for comparison; run without "
    "--quick for those.**"
)
QUICK_MARK = "*"


def markdown(
    rows: Sequence[SummaryRow],
    notes: Sequence[str] = (),
    retry_workloads: Iterable[str] = ("bank",),
    *,
    quick: bool = False,
) -> str:
    """The summary as a GitHub markdown table, notes below it.

    Retries per commit and SQLSTATEs are shown for ``retry_workloads`` only.
    ``quick``: a banner above the table and every ratio marked
    :data:`QUICK_MARK`, so no quick-run ratio travels without its label.
    """
    with_retries = set(retry_workloads)
    mark = QUICK_MARK if quick else ""
    head = (
        "| workload | variant | API | conc. | ops/s | ratio | p50 ms | p99 ms "
        "| CPU ms/op | stmts/op | retries/commit | SQLSTATEs |"
    )
    lines = [head, "|" + "---|" * 4 + "---:|" * 7 + "---|"]
    for r in rows:
        if r.status != "ok":
            cells = [r.workload, r.variant, r.api, str(r.concurrency)]
            status = (
                "unavailable (see below)"
                if r.status == "unavailable"
                else (f"{r.status}: {_md(_short(r.reason))}")
            )
            lines.append("| " + " | ".join(cells) + f" | {status} |" + " |" * 7)
            continue
        bank = r.workload in with_retries
        states = ", ".join(f"{k}: {v}" for k, v in r.sqlstates.items())
        if bank and r.errors:  # errors that reached the caller
            states = ", ".join(filter(None, [states, f"errors: {r.errors}"]))
        lines.append(
            "| "
            + " | ".join(
                [
                    r.workload,
                    r.variant,
                    r.api,
                    str(r.concurrency),
                    _num(r.ops_per_s, 0),
                    _num(r.ratio, 2) + (mark if r.ratio is not None else ""),
                    _num(r.p50_ms, 2),
                    _num(r.p99_ms, 2),
                    _num(r.cpu_ms_per_op, 3),
                    _num(r.statements_per_op, 1),
                    _num(r.retries_per_commit, 3) if bank else "",
                    (states or "none") if bank else "",
                ]
            )
            + " |"
        )
    if quick:
        lines[:0] = [QUICK_BANNER, ""]
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return out + "\n"


def _short(text: str | None, limit: int = 80) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def write_json(
    path: Path,
    meta: dict[str, Any],
    cells: Sequence[CellResult],
    rows: Sequence[SummaryRow],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": meta,
        "summary": [dict(vars(r)) for r in rows],
        "cells": [c.to_json() for c in cells],
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def write_plots(
    directory: Path, rows: Sequence[SummaryRow], *, quick: bool = False
) -> list[Path]:
    """One PNG per workload: throughput and p99 by concurrency, per scenario.

    A workload measured at one concurrency only (``--quick``, or one
    ``--concurrency``) gets bars per scenario instead: lines over a single x
    would be one column of dots. ``quick`` says "not for comparison" in
    every title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    by_workload: dict[str, list[SummaryRow]] = defaultdict(list)
    for r in rows:
        if r.status == "ok" and r.ops_per_s is not None:
            by_workload[r.workload].append(r)
    suffix = " (quick run: not for comparison)" if quick else ""
    for workload, wrows in by_workload.items():
        if len({r.concurrency for r in wrows}) == 1:
            path = directory / f"{workload}.png"
            _bar_plot(plt, path, workload, wrows, suffix)
            written.append(path)
            continue
        fig, (ax_tp, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
        series: dict[str, list[SummaryRow]] = defaultdict(list)
        for r in wrows:
            series[r.scenario].append(r)
        for name, points in series.items():
            points.sort(key=lambda r: r.concurrency)
            xs = [p.concurrency for p in points]
            ax_tp.plot(xs, [p.ops_per_s for p in points], marker="o", label=name)
            ax_p99.plot(xs, [p.p99_ms for p in points], marker="o", label=name)
        for ax, title, unit in (
            (ax_tp, "throughput", "ops/s"),
            (ax_p99, "p99 latency", "ms"),
        ):
            ax.set_title(f"{workload}: {title}{suffix}")
            ax.set_xlabel("concurrency (tasks)")
            ax.set_ylabel(unit)
            ax.set_xscale("log", base=2)
            ax.grid(True, alpha=0.3)
        ax_p99.set_yscale("log")
        ax_tp.legend(fontsize="small")
        fig.tight_layout()
        path = directory / f"{workload}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _bar_plot(
    plt: Any, path: Path, workload: str, rows: Sequence[SummaryRow], suffix: str
) -> None:
    """Throughput and p99 as horizontal bars, one per scenario (one concurrency)."""
    names = [r.scenario for r in rows]
    height = max(3.0, 0.45 * len(rows) + 1.5)
    fig, (ax_tp, ax_p99) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    ax_tp.barh(names, [r.ops_per_s or 0.0 for r in rows])
    ax_p99.barh(names, [r.p99_ms or 0.0 for r in rows])
    conc = rows[0].concurrency
    for ax, title, unit in (
        (ax_tp, "throughput", "ops/s"),
        (ax_p99, "p99 latency", "ms"),
    ):
        ax.set_title(f"{workload}: {title} at concurrency {conc}{suffix}", fontsize=9)
        ax.set_xlabel(unit)
        ax.grid(True, axis="x", alpha=0.3)
    ax_tp.invert_yaxis()  # the first scenario (the reference) on top
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
