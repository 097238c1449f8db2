"""When each sweep runs: the windowed sweeps (verify, orphans) over every window of the last
`sweep_lookback_windows` that ended `sweep_delay_s` ago and was not swept yet (so a downtime is made
good), the state sweeps (projection, totals) once per window, the settlement sweep once per day for
the day before; then the rechecks of unresolved alerts, and the reports due.

Every replica runs the schedule; `pm.reconciliation_run` lets exactly one of them run each
(sweep, period), and a sweep another replica holds is skipped, not waited for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pm_reconciler.settings import Settings
from pm_reconciler.sweeps.runner import LeaseLostError, Runner, Sweep
from pm_reconciler.sweeps.window import Window
from pm_shared.db import Pool
from pm_shared.ledger.api import Ledger
from pm_shared.reconciliation import queries, rechecks

log = logging.getLogger(__name__)


@dataclass
class Schedule:
    config: Settings
    pool: Pool
    ledger: Ledger
    runner: Runner
    windowed: Sequence[Sweep]
    state: Sequence[Sweep]
    daily: Sequence[Sweep]
    after: Sequence[Callable[[datetime], Awaitable[object]]] = ()
    """Work after each tick (the reports due), given the tick's time."""

    async def tick(self, now: datetime | None = None) -> None:
        at = now or datetime.now(UTC)
        config = self.config
        windows = Window.slots(at, config.sweep_window_s, config.sweep_delay_s, config.sweep_lookback_windows)
        for window in windows:
            for sweep in self.windowed:
                await self._run(sweep, window)
        for sweep in self.state:
            await self._run(sweep, windows[-1])
        yesterday = (at - timedelta(seconds=config.sweep_delay_s)).date() - timedelta(days=1)
        for sweep in self.daily:
            await self._run(sweep, Window.of_day(yesterday.isoformat()))
        await self._resume_stale()
        await rechecks.intents(self.pool, self.ledger)
        await rechecks.orphan_transfers(self.pool, self.ledger)
        for work in self.after:
            await work(at)

    async def _resume_stale(self) -> None:
        """Runs whose holder died (their lease ran out) resume here, on-demand ones included."""
        by_name = {s.name: s for s in (*self.windowed, *self.state, *self.daily)}
        async with self.pool.acquire() as conn:
            stale = await conn.fetch(queries.SELECT_STALE_RUNS)
        for row in stale:
            sweep = by_name.get(row["sweep"])
            if sweep is not None:
                await self._run(sweep, Window.from_key(row["period"]), row["period"])

    async def _run(self, sweep: Sweep, window: Window, period: str | None = None) -> None:
        try:
            await self.runner.run(sweep, window, period)
        except LeaseLostError:
            log.warning("sweep %s %s: another replica took it over", sweep.name, window.key)
