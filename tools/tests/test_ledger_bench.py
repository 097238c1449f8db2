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
