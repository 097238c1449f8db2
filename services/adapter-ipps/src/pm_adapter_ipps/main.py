"""Wiring of pm-adapter-ipps: the IPPS client (several connection pools), its poller, the payout
handlers and the refund intake, run as a PSP adapter's process (`pm_shared.psp.adapter.service`);
`run()` is the console script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from pm_adapter_ipps import handlers, settings
from pm_adapter_ipps.client import IppsClient
from pm_adapter_ipps.poller import StatusPoller
from pm_adapter_ipps.refunds import RefundIntake
from pm_shared import fleet, runtime
from pm_shared.psp.adapter import service

SERVICE = fleet.ADAPTER_IPPS


@contextlib.asynccontextmanager
async def payouts(config: settings.Settings, deps: service.Deps) -> AsyncIterator[service.Adapter]:
    timeout = httpx.Timeout(config.request_timeout_ms / 1000, connect=config.connect_timeout_ms / 1000)
    # Every connection kept alive (one closed after each use is a new TCP handshake next time).
    per_pool = -(-config.http_connections // config.http_pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
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
        adapter = handlers.PayoutAdapter(
            deps.pool,
            client,
            poller,
            deps.publish,
            config.detached_polls_max,
            not_executed_grace_s=config.not_executed_after_s,
            refunds=RefundIntake(deps.pool, client, deps.publisher),
        )
        try:
            yield service.Adapter(
                handlers.subscriptions(adapter),
                sweep=lambda: adapter.sweep_once(config.sweep_interval_ms / 1000),
            )
        finally:
            await adapter.aclose()


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    await service.serve(SERVICE, config, stop, payouts)


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
