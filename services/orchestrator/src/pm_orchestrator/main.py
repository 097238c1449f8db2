"""Wiring of pm-orchestrator: the saga's consumers, the outbox relay and marks, the resume sweep and
the dead-letter review, all supervised; `run()` is the console script."""

from __future__ import annotations

import asyncio

from pm_orchestrator import handlers, settings
from pm_orchestrator.dead_letters import DeadLetters
from pm_orchestrator.plan import Planner
from pm_orchestrator.resume import Resumer
from pm_orchestrator.rules import Rules
from pm_orchestrator.saga import Saga
from pm_orchestrator.steps import default_registry
from pm_shared import db, fleet, runtime
from pm_shared.outbox import Marks, Relay
from pm_shared.streams import Publisher

SERVICE = fleet.ORCHESTRATOR


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE.name) as clients:
        # min_size 0: no connection is made until first needed, so a PostgreSQL that is still
        # starting delays the work (handlers retry, the relay backs off), not the start.
        pool = await db.create_pool(
            config.database_url,
            min_size=0,
            max_size=config.pool_max_size,
            application_name="pm-orchestrator",
            reset_on_release=False,
        )
        try:
            publisher = Publisher.from_settings(clients.commands, config)
            marks = Marks(pool)
            planner = Planner(default_registry(), config.pending_timeout_s, config.already_failed_grace_s)
            rules = Rules(clients.commands, pool, refresh_s=config.rules_refresh_s)
            saga = Saga(pool, publisher, rules, planner, config.default_tier, stop=stop, marks=marks)
            resumer = Resumer(
                saga,
                planner,
                publisher,
                resume_after_s=config.resume_after_s,
                interval_s=config.resume_interval_s,
            )
            review = DeadLetters(
                pool, clients.commands, publisher, config.stream_partitions, config.dead_letter_review_s
            )
            async with runtime.supervise(stop) as tasks:
                tasks.start("outbox relay", Relay(pool, publisher).run(stop))
                tasks.start("outbox marks", marks.run(stop))
                tasks.start("resume sweep", resumer.run(stop))
                tasks.start("dead-letter review", review.run(stop))
                subscriptions = handlers.subscriptions(saga)
                tasks.start("consumers", runtime.consume(config, clients, SERVICE, subscriptions, stop))
        finally:
            await pool.close()


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
