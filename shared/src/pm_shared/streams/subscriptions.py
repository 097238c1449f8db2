"""A service's subscriptions (the streams it reads, with their handlers) and running them.

`consume` is the whole life of a consuming service's streams: its health endpoint, the streams
provisioned (waiting for Redis meanwhile), one `Consumer` per subscription and the stream gauges,
all until the stop event. Services that need more (the ledger writer's lease) use its parts,
`consumers_for` and `run_consumers_until`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis

from pm_shared import errors, fleet, health
from pm_shared.health import ReadyCheck
from pm_shared.settings import CommonSettings, ServiceSettings
from pm_shared.streams import monitor, tuning
from pm_shared.streams.concurrency import sleep_unless
from pm_shared.streams.connection import connect
from pm_shared.streams.consumer import Consumer
from pm_shared.streams.delivery import BatchHandler, MessageHandler
from pm_shared.streams.provision import provision

log = logging.getLogger(__name__)

# Pauses between provisioning attempts while Redis is unreachable, doubling.
PROVISION_BACKOFF_S = 0.5
PROVISION_BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class RedisClients:
    commands: Redis
    """For ordinary commands; retries transient failures."""
    reader: Redis
    """For blocking stream reads; never retries (the consumer recovers instead)."""


@asynccontextmanager
async def redis_clients(settings: CommonSettings, name: str) -> AsyncIterator[RedisClients]:
    """The two clients a consuming process needs, closed at the end of the block."""
    commands = connect(settings.redis_url, name=name)
    reader = connect(settings.redis_url, blocking_reads=True, name=f"{name}-reader")
    try:
        yield RedisClients(commands, reader)
    finally:
        await reader.aclose()
        await commands.aclose()


@dataclass(frozen=True)
class Subscription:
    """One stream a service reads: its messages' decoder and the handler (per message or per batch)."""

    stream: str
    decoder: msgspec.json.Decoder[Any]
    handle: MessageHandler[Any] | None = None
    handle_batch: BatchHandler[Any] | None = None
    waits_out_outages: bool = False
    """True when the handler waits a PostgreSQL/Redis outage out itself (so the failures it returns
    are final for this delivery): the consumer then never calls it again in place."""


async def consume(
    config: ServiceSettings,
    clients: RedisClients,
    member: fleet.Member,
    subscriptions: list[Subscription],
    stop: asyncio.Event,
    *,
    ready: ReadyCheck | None = None,
) -> None:
    """Serve health/metrics on the service's host and port, provision the streams, and run one
    consumer per subscription (in `member`'s group) until `stop`.

    Ready while every consumer reads new entries, Redis answers and `ready` (when given) agrees.
    """
    assert member.group is not None, f"{member.name} consumes no streams"
    consumers = consumers_for(
        config,
        clients,
        group=member.group,
        consumer=config.consumer(member.name),
        subscriptions=subscriptions,
    )

    async def is_ready() -> bool:
        if not all(c.ready.is_set() for c in consumers) or stop.is_set():
            return False
        await clients.commands.ping()
        return await ready() if ready is not None else True

    async with health.serve(config.host, config.port, is_ready):
        await run_consumers_until(config, clients, consumers, stop)


def consumers_for(
    settings: CommonSettings,
    clients: RedisClients,
    *,
    group: str,
    consumer: str,
    subscriptions: list[Subscription],
) -> list[Consumer[Any]]:
    """One consumer per subscription, tuned by the settings."""
    return [
        Consumer(
            redis=clients.commands,
            reader=clients.reader,
            stream=sub.stream,
            group=group,
            consumer=consumer,
            decoder=sub.decoder,
            handle=sub.handle,
            handle_batch=sub.handle_batch,
            **(
                tuning.from_settings(settings, transient_retry_s=0)
                if sub.waits_out_outages
                else tuning.from_settings(settings)
            ),
        )
        for sub in subscriptions
    ]


async def run_consumers_until(
    settings: CommonSettings, clients: RedisClients, consumers: list[Consumer[Any]], stop: asyncio.Event
) -> None:
    """Provision the streams (waiting for Redis), then run `consumers` and the stream gauges until `stop`.

    The consumers and the gauges run in one task group: one that dies takes the others down with it.
    """
    if not await _provision(clients.commands, settings.stream_partitions, stop):
        return
    async with asyncio.TaskGroup() as tasks:
        for c in consumers:
            tasks.create_task(c.run(stop), name=f"consume {c.stream}")
        keys = [k for c in consumers for k in c.keys]
        tasks.create_task(monitor.poll(clients.commands, keys, stop), name="stream gauges")


async def _provision(redis: Redis, partitions: int, stop: asyncio.Event) -> bool:
    """Provision streams, waiting for Redis to come up (not ready meanwhile); False when stopped first."""
    backoff = PROVISION_BACKOFF_S
    while not stop.is_set():
        try:
            await provision(redis, partitions)
            return True
        except errors.OUTAGES as exc:
            log.warning("Redis unreachable (%s); provisioning again in %.1fs", exc, backoff)
            if not await sleep_unless(stop, backoff):
                backoff = min(backoff * 2, PROVISION_BACKOFF_MAX_S)
    return False
