"""Wiring of pm-orchestrator: its consumers, the outbox relay, health endpoint and lifecycle; `run()`
is the console script.

The relay publishes outbox rows left unpublished (the gateway's intake messages whose publish after
commit failed, and later the saga's own), so an accepted intent always reaches `pm:intents`.
"""

from __future__ import annotations

import asyncio

from pm_orchestrator import handlers, settings
from pm_shared import db, runtime
from pm_shared.outbox import Relay
from pm_shared.streams import Publisher
from pm_shared.streams.names import GROUP_ORCHESTRATOR

SERVICE = "orchestrator"


async def serve(config: settings.Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE) as clients:
        # min_size 0: no connection is made until the relay's first pass, so a PostgreSQL that is
        # still starting delays the relay (it backs off) and not the consumers.
        pool = await db.create_pool(
            config.database_url, min_size=0, max_size=2, application_name="pm-orchestrator"
        )
        publisher = Publisher(
            clients.commands,
            partitions=config.stream_partitions,
            maxlen=config.stream_maxlen,
            threshold=config.backpressure_threshold,
        )
        relay = asyncio.create_task(Relay(pool, publisher).run(stop))
        try:
            await runtime.consume(
                config,
                clients,
                group=GROUP_ORCHESTRATOR,
                consumer=config.consumer(SERVICE),
                subscriptions=handlers.subscriptions(),
                stop=stop,
                host=config.host,
                port=config.port,
            )
        finally:
            stop.set()
            await relay
            await pool.close()


def run() -> None:
    runtime.run_service(SERVICE, settings.load, serve)
