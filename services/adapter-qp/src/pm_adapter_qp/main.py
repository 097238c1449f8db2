"""Wiring of pm-adapter-qp: the QP client, its order poller and the top-up handlers, run as a PSP
adapter's process (`pm_shared.psp.adapter.service`); `run()` is the console script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from pm_adapter_qp import handlers, settings
from pm_adapter_qp.client import QpClient
from pm_adapter_qp.poller import OrderPoller
from pm_shared import fleet, runtime
from pm_shared.psp.adapter import service

SERVICE = fleet.ADAPTER_QP


@contextlib.asynccontextmanager
async def collects(config: settings.Settings, deps: service.Deps) -> AsyncIterator[service.Adapter]:
    timeout = httpx.Timeout(config.request_timeout_ms / 1000, connect=config.connect_timeout_ms / 1000)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=config.qp_url, timeout=timeout, limits=limits) as http:
        client = QpClient(http, config.qp_secret)
        poller = OrderPoller(
            client, config.poll_initial_ms / 1000, config.poll_max_ms / 1000, config.poll_attempts
        )
        request_s = config.request_timeout_ms / 1000
        adapter = handlers.CollectAdapter(
            deps.pool,
            client,
            poller,
            deps.publish,
            config.qr_ttl_s,
            # a registration, then each lookup after its wait
            job_budget_s=request_s + config.poll_attempts * (request_s + config.poll_max_ms / 1000),
        )

        async def sweep() -> int:
            return await adapter.sweep_once(
                config.sweep_interval_ms / 1000,
                config.sweep_max_idle_ms / 1000,
                config.sweep_batch,
                config.sweep_concurrency,
            )

        yield service.Adapter(handlers.subscriptions(adapter), sweep)


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    await service.serve(SERVICE, config, stop, collects)


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
