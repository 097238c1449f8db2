"""Chaos: a pm-webhooks process SIGKILLed while attempts are in flight (a receiver slow to answer).
Once a new sender runs, every event has been delivered at least once, each under its stable
`webhook-id`; the killed sender's claims lapsed and were taken again, and nothing was lost."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_shared.streams import Publisher
from pm_shared.streams.names import EVENTS
from pm_tools.testing import webhooks as kit
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, delete_streams
from pm_webhooks import payloads

EVENTS_SENT = 24
SENDER = {
    "PM_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    "PM_WEBHOOKS_RETRY_SCHEDULE_S": "0.2,0.2,0.2,0.2,0.2,0.2",
    "PM_WEBHOOKS_REQUEST_TIMEOUT_S": "2",
    "PM_WEBHOOKS_CLAIM_MARGIN_S": "0.5",
    "PM_WEBHOOKS_POLL_INTERVAL_S": "0.1",
    "PM_STREAM_BLOCK_MS": "100",
    "PM_STREAM_LEASE_MS": "1000",
    "PM_STREAM_CLAIM_INTERVAL_MS": "200",
}


async def test_a_sender_killed_mid_delivery_loses_no_event(
    fleet: Fleet, redis: Redis, pool: Pool, cipher: Cipher
) -> None:
    await delete_streams(redis, EVENTS.name)
    first = fleet.start("webhooks", env=SENDER)
    await first.wait_ready()
    async with kit.Receiver(lambda _: kit.Answer(delay_s=0.4)) as receiver:
        async with pool.acquire() as conn:
            merchant = await kit.merchant(conn, cipher)
            endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, ["intent.settled"])
            intents = [await kit.merchant_intent(conn, merchant) for _ in range(EVENTS_SENT)]
        publisher = Publisher(redis)
        for intent_id in intents:
            await publisher.publish(EVENTS, kit.state_changed(intent_id, "SETTLED"))

        async def in_flight() -> bool:
            return receiver.answered >= 2 and len(receiver.received) - receiver.answered >= 2

        await eventually(in_flight, what="attempts in flight after a few answers")
        # Counted just before the kill: these requests are still waiting for their answer (0.4 s), so
        # the sender dies without one and never records them.
        cut = len(receiver.received) - receiver.answered
        first.popen.kill()
        await first.wait_exit(10)
        second = fleet.start("webhooks", env=SENDER)
        await second.wait_ready()

        async def all_delivered() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM pm.webhook_delivery WHERE endpoint_id = $1 AND status = 'DELIVERED'",
                endpoint.endpoint_id,
            )
            return bool(n == EVENTS_SENT)

        await eventually(all_delivered, timeout=30, what="every event delivered after the restart")
        await asyncio.sleep(0)
    expected = {payloads.webhook_id(i, "intent.settled") for i in intents}
    seen = receiver.ids()
    assert set(seen) == expected  # every event arrived, under its own id, and nothing else did
    assert cut >= 2  # the kill did cut attempts short…
    assert sum(1 for n in seen.values() if n >= 2) >= cut  # …which were sent again, under the same id
    rows = await pool.fetch(
        "SELECT webhook_id, attempts FROM pm.webhook_delivery WHERE endpoint_id = $1", endpoint.endpoint_id
    )
    assert {r["webhook_id"] for r in rows} == expected
