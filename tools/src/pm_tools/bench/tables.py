"""The tables the benchmarks print: their common shape, and the stages of runs of intents."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from rich.table import Table
from rich.text import Text

from pm_tools.bench.runs import Run

STAGE_COLUMNS = ("run", "stage", "p50", "p95", "p99", "mean")


def table(
    title: str, columns: Sequence[str], *, right: Collection[str] = (), caption: str | None = None
) -> Table:
    """A table of `columns`, those named in `right` right-justified. The caption is plain text: no
    markup or emoji codes (`pm:ledger:` is no emoji)."""
    out = Table(title=title, caption=None if caption is None else Text(caption))
    for column in columns:
        out.add_column(column, justify="right" if column in right else "left")
    return out


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def stages(title: str, caption: str, runs: Iterable[tuple[str, Run]]) -> Table:
    """Each stage of each run (labelled), then its total, a section per run."""
    out = table(title, STAGE_COLUMNS, right=STAGE_COLUMNS[2:], caption=caption)
    for label, run in runs:
        for stage in run.stages:
            out.add_row(label, stage.name, *stage.cells())
        out.add_row(label, "total", *run.total.cells(), end_section=True)
    return out
