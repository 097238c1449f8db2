"""Wiring of pm-orchestrator: the saga's consumers, the outbox relay, the resume sweep, health endpoint
and lifecycle; `run()` is the console script."""

from __future__ import annotations

import asyncio

from pm_orchestrator import handlers, settings
from pm_orchestrator.dead_letters import DeadLetters
from pm_orchestrator.plan import Planner
from pm_orchestrator.resume import Resumer
from pm_orchestrator.rules import Rules
from pm_orchestrator.saga import Saga
from pm_orchestrator.steps import default_registry
from pm_shared import db, runtime
from pm_shared.outbox import Marks, Relay
from pm_shared.streams import Publisher
from pm_shared.streams.names import GROUP_ORCHESTRATOR

SERVICE = "orchestrator"


async def serve(config: settings.Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE) as clients:
        # min_size 0: no connection is made until first needed, so a PostgreSQL that is still
        # starting delays the work (handlers retry, the relay backs off), not the start.
        pool = await db.create_pool(
            config.database_url,
            min_size=0,
            max_size=config.pool_max_size,
            application_name="pm-orchestrator",
            reset_on_release=False,
        )
        publisher = Publisher(
            clients.commands,
            partitions=config.stream_partitions,
            maxlen=config.stream_maxlen,
            threshold=config.backpressure_threshold,
        )
        marks = Marks(pool)
        planner = Planner(default_registry(), config.pending_timeout_s, config.already_failed_grace_s)
        saga = Saga(
            pool,
            publisher,
            Rules(clients.commands, pool, refresh_s=config.rules_refresh_s),
            planner,
            config.default_tier,
            stop=stop,
            marks=marks,
        )
        resumer = Resumer(
            saga,
            planner,
            publisher,
            resume_after_s=config.resume_after_s,
            interval_s=config.resume_interval_s,
        )
        background = [
            asyncio.create_task(Relay(pool, publisher).run(stop)),
            asyncio.create_task(resumer.run(stop)),
            asyncio.create_task(marks.run(stop)),
            asyncio.create_task(
                DeadLetters(
                    pool, clients.commands, publisher, config.stream_partitions, config.dead_letter_review_s
                ).run(stop)
            ),
        ]
        try:
            await runtime.consume(
                config,
                clients,
                group=GROUP_ORCHESTRATOR,
                consumer=config.consumer(SERVICE),
                subscriptions=handlers.subscriptions(saga),
                stop=stop,
                host=config.host,
                port=config.port,
            )
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await pool.close()


def run() -> None:
    runtime.run_service(SERVICE, settings.load, serve)
