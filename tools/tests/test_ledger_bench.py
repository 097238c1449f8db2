"""`pm bench`'s ledger figures, small: for each command size the bare engine and the real
ledger-writer both move every transfer, each `ok` (the figures themselves are `pm bench`'s; nothing
here asserts a speed)."""

from __future__ import annotations

import pytest

from pm_tools.bench import ledger
from pm_tools.testing import fixtures
from pm_tools.testing.db import server_url

pytestmark = pytest.mark.slow


async def test_every_size_is_measured_on_both_sides_in_the_same_run() -> None:
    rows = await ledger.run(server_url(), 600, fixtures.test_redis_url(), repeat=2)

    assert [row.per_command for row in rows] == list(ledger.SIZES)
    for row in rows:
        assert row.bare.transfers == 600 and row.bare.rate > 0
        assert row.writer is not None
        assert row.writer.backlog.transfers == row.writer.live.transfers == 600
        assert row.ratio is not None and row.ratio > 0
    section = ledger.section(rows, 2)
    assert section.goals_met == ledger.goals_met(rows)


def test_rows_against_tigerbeetle_are_held_to_their_own_goal_and_named() -> None:
    fast = ledger.Throughput(30_000, 1.0)
    writer = ledger.WriterRun(backlog=ledger.Throughput(23_400, 1.0), live=ledger.Throughput(21_000, 1.0))
    embedded = ledger.LedgerRow(2, fast, writer)
    real = ledger.LedgerRow(2, fast, writer, engine="tigerbeetle")

    assert embedded.writer_goal == ledger.WRITER_GOAL and real.writer_goal == ledger.TIGERBEETLE_WRITER_GOAL
    # 78 % of bare: the embedded engine's goal (75 %) is met, TigerBeetle's (80 %) is not.
    assert ledger.goals_met([embedded]) and not ledger.goals_met([real])
    assert real.label == "2 (linked), TigerBeetle" and embedded.label == "2 (linked)"
    names = [b.name for b in ledger.section([embedded, real], 1).benchmarks]
    assert "ledger-writer, backlog, 2 transfers per command (linked), TigerBeetle" in names


async def test_a_ledger_url_that_is_not_tigerbeetle_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="not a TigerBeetle URL"):
        await ledger._tigerbeetle_rows(server_url(), "embedded+postgresql://x/y", 10, "redis://x", {}, 1)
