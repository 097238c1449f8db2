"""Wiring of pm-adapter-ipps: settings, Redis, consumers, health endpoint; `run()` is the console script."""

from __future__ import annotations

import asyncio

from pm_adapter_ipps import handlers, settings
from pm_shared import runtime
from pm_shared.streams.names import GROUP_ADAPTER_IPPS

SERVICE = "adapter-ipps"


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE) as clients:
        await runtime.consume(
            config,
            clients,
            group=GROUP_ADAPTER_IPPS,
            consumer=config.consumer(SERVICE),
            subscriptions=handlers.subscriptions(),
            stop=stop,
            host=config.host,
            port=config.port,
        )


def run() -> None:
    runtime.run_service(SERVICE, settings.load, main)
