"""Wiring of pm-adapter-qp: PostgreSQL pool, QP client, consumers (jobs and hints), QR sweep, health.

`run()` is the console script.
"""

from __future__ import annotations

import asyncio

import httpx

from pm_adapter_qp import handlers
from pm_adapter_qp.client import QpClient
from pm_adapter_qp.poller import OrderPoller
from pm_adapter_qp.settings import Settings, load
from pm_shared import db, health
from pm_shared.runtime import consumers_for, redis_clients, run_consumers_until, run_service
from pm_shared.streams import Publisher
from pm_shared.streams.names import GROUP_ADAPTER_QP

SERVICE = "adapter-qp"


def run() -> None:
    run_service(SERVICE, load, serve)


async def serve(config: Settings, stop: asyncio.Event) -> None:
    async with redis_clients(config, SERVICE) as clients:
        pool = await db.create_pool(config.database_url, min_size=1, max_size=config.pool_max_size)
        timeout = httpx.Timeout(config.request_timeout_ms / 1000, connect=config.connect_timeout_ms / 1000)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        try:
            async with httpx.AsyncClient(base_url=config.qp_url, timeout=timeout, limits=limits) as http:
                client = QpClient(http, config.qp_secret)
                poller = OrderPoller(
                    client, config.poll_initial_ms / 1000, config.poll_max_ms / 1000, config.poll_attempts
                )
                publisher = Publisher(
                    clients.commands,
                    partitions=config.stream_partitions,
                    maxlen=config.stream_maxlen,
                    threshold=config.backpressure_threshold,
                )
                request_s = config.request_timeout_ms / 1000
                adapter = handlers.CollectAdapter(
                    pool,
                    client,
                    poller,
                    handlers.publisher_of(publisher),
                    config.qr_ttl_s,
                    # a registration, then each lookup after its wait
                    job_budget_s=request_s + config.poll_attempts * (request_s + config.poll_max_ms / 1000),
                )
                consumers = consumers_for(
                    config,
                    clients,
                    group=GROUP_ADAPTER_QP,
                    consumer=config.consumer(SERVICE),
                    subscriptions=handlers.subscriptions(adapter),
                )

                async def is_ready() -> bool:
                    if stop.is_set() or not all(c.ready.is_set() for c in consumers):
                        return False
                    await clients.commands.ping()
                    return True

                async with health.serve(config.host, config.port, is_ready), asyncio.TaskGroup() as tasks:
                    tasks.create_task(
                        adapter.sweep(
                            config.sweep_interval_ms / 1000,
                            config.sweep_max_idle_ms / 1000,
                            config.sweep_batch,
                            config.sweep_concurrency,
                            stop,
                        )
                    )
                    tasks.create_task(run_consumers_until(config, clients, consumers, stop))
        finally:
            await pool.close()
