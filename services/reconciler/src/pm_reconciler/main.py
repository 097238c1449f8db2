"""Wiring of pm-reconciler: its consumers and health endpoint, supervised; `run()` is the console script."""

from __future__ import annotations

import asyncio

from pm_reconciler import handlers, settings
from pm_shared import fleet, runtime

SERVICE = fleet.RECONCILER


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE.name) as clients, runtime.supervise(stop) as tasks:
        tasks.start("consumers", runtime.consume(config, clients, SERVICE, handlers.subscriptions(), stop))


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
