"""Scheduled reports: yesterday's and last week's written once into the reports directory (a report
already there is left alone), and none without a directory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pm_reconciler import reporting
from pm_shared.db import Pool


async def test_the_due_reports_are_written_once(db_pool: Pool, tmp_path: Path) -> None:
    now = datetime(2026, 3, 4, 0, 5, tzinfo=UTC)  # a Wednesday: the week before is 2026-W09
    assert [str(p) for p in reporting.due(now)] == ["2026-03-03", "2026-W09"]
    written = await reporting.write_due(db_pool, str(tmp_path), now)
    names = sorted(p.name for p in written)
    assert names == ["2026-03-03.csv", "2026-03-03.html", "2026-W09.csv", "2026-W09.html"], names
    assert await reporting.write_due(db_pool, str(tmp_path), now) == []
    assert await reporting.write_due(db_pool, "", now) == []
