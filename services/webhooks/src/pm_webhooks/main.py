"""Wiring of pm-webhooks: the fan-out on `pm:events` (consumer group `webhooks`), the dispatcher that
attempts due deliveries, and the pending-deliveries gauge; all supervised. `run()` is the console
script (docs/webhooks.md)."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
from prometheus_client import Gauge

from pm_shared import db, fleet, runtime
from pm_shared.keys.crypto import Cipher
from pm_shared.messages import IntentStateChanged
from pm_shared.runtime import Subscription
from pm_shared.streams.names import EVENTS
from pm_webhooks import queries, settings
from pm_webhooks.dispatcher import Dispatcher
from pm_webhooks.fanout import FanOut
from pm_webhooks.sender import Sender

SERVICE = fleet.WEBHOOKS

PENDING = Gauge("pm_webhooks_pending_deliveries", "Deliveries waiting for an attempt (PENDING).")


def http_client(config: settings.Settings) -> aiohttp.ClientSession:
    """The one client every attempt goes through: never reads proxies from the environment
    (`trust_env`), keeps no cookies, bounded by the request timeout; at most `global_concurrency`
    connections. The sender asks each request not to follow redirects."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.global_concurrency, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=config.request_timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        raise_for_status=False,
    )


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    cipher = Cipher.from_setting(config.key_encryption_key)
    async with runtime.redis_clients(config, SERVICE.name) as clients, http_client(config) as client:
        pool = await db.create_pool(
            config.database_url, min_size=1, max_size=config.pool_max_size, application_name="pm-webhooks"
        )
        try:
            sender = Sender(client, config.networks(), config.request_timeout_s)
            dispatcher = Dispatcher(pool, sender, cipher, config)
            fanout = FanOut(pool, dispatcher.wake)
            subscriptions = [
                Subscription(
                    EVENTS.name, msgspec.json.Decoder(IntentStateChanged), handle_batch=fanout.on_events
                )
            ]

            async def ready() -> bool:
                return await pool.fetchval("SELECT true") is True

            async def pending() -> None:
                PENDING.set(await pool.fetchval(queries.COUNT_PENDING))

            async with runtime.supervise(stop) as tasks:
                tasks.start(
                    "consumers", runtime.consume(config, clients, SERVICE, subscriptions, stop, ready=ready)
                )
                tasks.start("dispatcher", dispatcher.run(stop))
                tasks.start(
                    "pending gauge", runtime.every(config.gauge_interval_s, stop, pending, "pending gauge")
                )
        finally:
            await pool.close()


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
