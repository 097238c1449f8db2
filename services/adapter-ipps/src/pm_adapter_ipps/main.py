"""Wiring of pm-adapter-ipps: PostgreSQL pool, IPPS client, consumer, status sweep, health endpoint.

`run()` is the console script.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from pm_adapter_ipps import handlers
from pm_adapter_ipps.client import IppsClient
from pm_adapter_ipps.poller import StatusPoller
from pm_adapter_ipps.settings import Settings, load
from pm_shared import db, health
from pm_shared.runtime import consumers_for, redis_clients, run_consumers_until, run_service
from pm_shared.streams import Publisher
from pm_shared.streams.names import GROUP_ADAPTER_IPPS

SERVICE = "adapter-ipps"


def run() -> None:
    run_service(SERVICE, load, serve)


async def serve(config: Settings, stop: asyncio.Event) -> None:
    async with redis_clients(config, SERVICE) as clients:
        pool = await db.create_pool(config.database_url, min_size=1, max_size=config.pool_max_size)
        timeout = httpx.Timeout(config.request_timeout_ms / 1000, connect=config.connect_timeout_ms / 1000)
        # Every connection kept alive (one closed after each use is a new TCP handshake next time).
        per_pool = -(-config.http_connections // config.http_pools)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        try:
            async with contextlib.AsyncExitStack() as stack:
                pools = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=config.ipps_url, timeout=timeout, limits=limits)
                    )
                    for _ in range(config.http_pools)
                ]
                client = IppsClient(pools, config.ipps_auth_secret)
                poller = StatusPoller(
                    client, config.poll_initial_ms / 1000, config.poll_max_ms / 1000, config.poll_attempts
                )
                publisher = Publisher(
                    clients.commands,
                    partitions=config.stream_partitions,
                    maxlen=config.stream_maxlen,
                    threshold=config.backpressure_threshold,
                )
                adapter = handlers.PayoutAdapter(
                    pool,
                    client,
                    poller,
                    handlers.publisher_of(publisher),
                    config.detached_polls_max,
                    not_executed_grace_s=config.not_executed_after_s,
                )
                consumers = consumers_for(
                    config,
                    clients,
                    group=GROUP_ADAPTER_IPPS,
                    consumer=config.consumer(SERVICE),
                    subscriptions=handlers.subscriptions(adapter),
                )

                async def is_ready() -> bool:
                    if stop.is_set() or not all(c.ready.is_set() for c in consumers):
                        return False
                    await clients.commands.ping()
                    return True

                try:
                    async with health.serve(config.host, config.port, is_ready), asyncio.TaskGroup() as tasks:
                        tasks.create_task(adapter.sweep(config.sweep_interval_ms / 1000, stop))
                        tasks.create_task(run_consumers_until(config, clients, consumers, stop))
                finally:
                    await adapter.aclose()
        finally:
            await pool.close()
