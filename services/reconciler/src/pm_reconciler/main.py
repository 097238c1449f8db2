"""Wiring of pm-reconciler: the continuous check on `pm:events`, the schedule of sweeps, rechecks and
reports, and sweeps asked for now; all supervised. `run()` is the console script."""

from __future__ import annotations

import asyncio

import msgspec

from pm_reconciler import continuous, on_demand, settings
from pm_reconciler.schedule import Schedule
from pm_reconciler.sweeps.orphans import OrphanSweep
from pm_reconciler.sweeps.runner import Runner, Sweep, owner_name
from pm_reconciler.sweeps.settlement import SettlementSweep
from pm_reconciler.sweeps.state import ProjectionSweep, TotalsSweep
from pm_reconciler.sweeps.verify import VerifySweep
from pm_shared import db, fleet, runtime
from pm_shared.ledger import open_ledger
from pm_shared.ledger.api import Ledger
from pm_shared.messages import IntentStateChanged
from pm_shared.reconciliation import rechecks, settlement
from pm_shared.runtime import Subscription
from pm_shared.streams.names import EVENTS

SERVICE = fleet.RECONCILER


def sweeps(config: settings.Settings, pool: db.Pool, ledger: Ledger) -> dict[str, list[Sweep]]:
    """The sweeps by how they are scheduled: per window, of the state, per day."""
    return {
        "windowed": [
            VerifySweep(pool, ledger, config.sweep_page),
            OrphanSweep(pool, ledger, config.sweep_page),
        ],
        "state": [ProjectionSweep(pool, ledger, config.sweep_page), TotalsSweep(ledger)],
        "daily": [SettlementSweep(pool, psps(config))],
    }


def psps(config: settings.Settings) -> list[settlement.Psp]:
    """The PSPs whose settlement reports are checked: those given a URL."""
    wanted = [("ipps", config.ipps_url, config.ipps_secret), ("qp", config.qp_url, config.qp_secret)]
    return [settlement.Psp(name, url, secret) for name, url, secret in wanted if url]


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE.name) as clients:
        pool = await db.create_pool(
            config.database_url, min_size=0, max_size=config.pool_max_size, application_name="pm-reconciler"
        )
        ledger = await open_ledger(config.ledger(), readonly=True)
        try:
            check = continuous.Continuous(
                pool, ledger, void_grace_s=config.void_grace_s, cap=config.alert_cap
            )
            runner = Runner(pool, owner_name(), config.lease_ms, config.alert_cap)
            groups = sweeps(config, pool, ledger)
            schedule = Schedule(
                config, pool, ledger, runner, groups["windowed"], groups["state"], groups["daily"]
            )
            by_name = {s.name: s for group in groups.values() for s in group}
            subscriptions = [
                Subscription(
                    EVENTS.name, msgspec.json.Decoder(IntentStateChanged), handle_batch=check.on_events
                )
            ]
            async with runtime.supervise(stop) as tasks:
                tasks.start("consumers", runtime.consume(config, clients, SERVICE, subscriptions, stop))
                tasks.start("deferred checks", check.run_deferred(stop))
                tasks.start(
                    "schedule", runtime.every(config.sweep_interval_s, stop, schedule.tick, "sweep schedule")
                )
                rechecked = {
                    "verify": lambda: rechecks.intents(pool, ledger),
                    "orphans": lambda: rechecks.orphan_transfers(pool, ledger),
                }
                tasks.start(
                    "on-demand sweeps", on_demand.serve(clients.reader, runner, by_name, stop, rechecked)
                )
        finally:
            await ledger.close()
            await pool.close()


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
