"""What the sender does when a merchant's endpoint does not take a delivery: it retries on the
schedule with the same `webhook-id` until it is back, honours `Retry-After`, disables the endpoint on
410, never follows a redirect, refuses private addresses unless allowed, and a slow merchant never
holds up another merchant's deliveries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_tools.testing import webhooks as kit
from pm_tools.testing.fixtures import eventually

SETTLED = ["intent.settled"]


async def delivery(pool: Pool, endpoint_id: str) -> dict[str, object]:
    row = await pool.fetchrow(
        "SELECT * FROM pm.webhook_delivery WHERE endpoint_id = $1 ORDER BY id LIMIT 1", endpoint_id
    )
    return dict(row) if row is not None else {}


async def attempts(pool: Pool, endpoint_id: str) -> list[dict[str, object]]:
    rows = await pool.fetch(
        """SELECT a.* FROM pm.webhook_attempt a JOIN pm.webhook_delivery d ON d.id = a.delivery_id
           WHERE d.endpoint_id = $1 ORDER BY a.id""",
        endpoint_id,
    )
    return [dict(r) for r in rows]


async def one_event(publish: kit.Publish, pool: Pool, cipher: Cipher, url: str) -> kit.Endpoint:
    """A merchant with an endpoint at `url`, and one of its charges settled."""
    async with pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, url, SETTLED)
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))
    return endpoint


async def test_a_receiver_down_for_a_while_gets_the_delivery_once_back_with_the_same_id(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender(retry_schedule_s=",".join(["0.3"] * 12))
    async with kit.Receiver() as receiver:
        await receiver.close()  # down: connections refused
        endpoint = await one_event(publish, pool, cipher, receiver.url)

        async def tried_twice() -> bool:
            return len(await attempts(pool, endpoint.endpoint_id)) >= 2

        await eventually(tried_twice, what="two failed attempts")
        await receiver.reopen()

        async def delivered() -> bool:
            return (await delivery(pool, endpoint.endpoint_id)).get("status") == "DELIVERED"

        await eventually(delivered, what="delivered once the receiver is back")
    rows = await attempts(pool, endpoint.endpoint_id)
    assert rows[0]["trigger"] == "initial" and {r["trigger"] for r in rows[1:]} == {"retry"}
    assert [r["attempt"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["status_code"] is None and r["error"] for r in rows[:-1])
    assert rows[-1]["status_code"] == 200
    (webhook_id,) = receiver.ids()
    assert webhook_id == (await delivery(pool, endpoint.endpoint_id))["webhook_id"]
    async with pool.acquire() as conn:
        failing = await conn.fetchval(
            "SELECT failing_since FROM pm.webhook_endpoint WHERE endpoint_id = $1", endpoint.endpoint_id
        )
    assert failing is None  # the success cleared it


async def test_gone_disables_the_endpoint_and_fails_what_waits_for_it(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    async with kit.Receiver(lambda _: kit.Answer(410)) as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, SETTLED)
        # A delivery of an earlier event, waiting for its next attempt an hour from now.
        await conn.execute(
            """INSERT INTO pm.webhook_delivery (webhook_id, endpoint_id, merchant_id, event_type, payload,
                   next_attempt_at) VALUES ('msg_waiting', $1, $2, 'intent.settled', '\\x7b7d', $3)""",
            endpoint.endpoint_id,
            merchant,
            datetime.now(UTC) + timedelta(hours=1),
        )
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))

        async def disabled() -> bool:
            status = await conn.fetchval(
                "SELECT status FROM pm.webhook_endpoint WHERE endpoint_id = $1", endpoint.endpoint_id
            )
            return bool(status == "DISABLED")

        await eventually(disabled, what="the endpoint disabled")
        statuses = await conn.fetch(
            "SELECT webhook_id, status, last_error FROM pm.webhook_delivery WHERE endpoint_id = $1",
            endpoint.endpoint_id,
        )
        log = await conn.fetch(
            "SELECT action, actor, detail FROM pm.webhook_event_log WHERE endpoint_id = $1",
            endpoint.endpoint_id,
        )
        # A later event makes no delivery for a disabled endpoint.
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "FAILED"))
    assert {r["webhook_id"]: r["status"] for r in statuses}.get("msg_waiting") == "FAILED"
    assert {r["status"] for r in statuses} == {"FAILED"}
    assert [(r["action"], r["actor"]) for r in log] == [("disabled", "pm-webhooks")]
    assert "410" in log[0]["detail"]
    assert len(receiver.received) == 1
    assert len(await attempts(pool, endpoint.endpoint_id)) == 1


async def test_a_redirect_is_a_failure_and_never_followed(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    async with kit.Receiver() as target:
        moved = kit.Answer(307, {"location": target.url})
        async with kit.Receiver(lambda _: moved) as receiver:
            endpoint = await one_event(publish, pool, cipher, receiver.url)

            async def failed() -> bool:
                return (await delivery(pool, endpoint.endpoint_id)).get("status") == "FAILED"

            await eventually(failed, what="the delivery FAILED after its last attempt")
    rows = await attempts(pool, endpoint.endpoint_id)
    assert [r["status_code"] for r in rows] == [307] * 5  # the first attempt and four retries
    assert target.received == []
    assert len(receiver.received) == 5


async def test_a_private_address_is_refused_without_a_request(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender(allowed_networks="")
    async with kit.Receiver() as receiver:
        endpoint = await one_event(publish, pool, cipher, receiver.url)

        async def refused() -> bool:
            return len(await attempts(pool, endpoint.endpoint_id)) >= 1

        await eventually(refused, what="an attempt refused")
    first = (await attempts(pool, endpoint.endpoint_id))[0]
    assert first["error"] == "address_not_allowed" and first["status_code"] is None
    assert receiver.received == []


async def test_retry_after_is_honoured(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    answers = iter([kit.Answer(503, {"retry-after": "2"})])

    def answer(_: kit.Received) -> kit.Answer:
        return next(answers, kit.Answer())

    async with kit.Receiver(answer) as receiver:
        endpoint = await one_event(publish, pool, cipher, receiver.url)

        async def delivered() -> bool:
            return (await delivery(pool, endpoint.endpoint_id)).get("status") == "DELIVERED"

        await eventually(delivered, what="delivered on the second attempt")
    first, second = receiver.received
    assert second.at - first.at >= 2.0  # the schedule alone would have tried again after 0.2 s
    assert first.webhook_id == second.webhook_id
    assert [r["status_code"] for r in await attempts(pool, endpoint.endpoint_id)] == [503, 200]


async def test_a_slow_merchant_does_not_hold_up_another(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender(request_timeout_s="30", endpoint_concurrency="4")
    async with kit.Receiver(lambda _: kit.Answer(delay_s=10)) as slow, kit.Receiver() as quick:
        async with pool.acquire() as conn:
            a = await kit.merchant(conn, cipher)
            b = await kit.merchant(conn, cipher)
            await kit.endpoint(conn, cipher, a, slow.url, SETTLED)
            fast = await kit.endpoint(conn, cipher, b, quick.url, SETTLED)
            for _ in range(8):  # twice what A's endpoint takes at once
                await publish(kit.state_changed(await kit.merchant_intent(conn, a), "SETTLED"))
            for _ in range(3):
                await publish(kit.state_changed(await kit.merchant_intent(conn, b), "SETTLED"))

        async def a_at_its_limit() -> bool:
            return len(slow.received) == 4

        await eventually(a_at_its_limit, what="A's first four requests in hand")

        async def b_delivered() -> bool:
            rows = await pool.fetch(
                "SELECT status FROM pm.webhook_delivery WHERE endpoint_id = $1", fast.endpoint_id
            )
            return len(rows) == 3 and {r["status"] for r in rows} == {"DELIVERED"}

        await eventually(b_delivered, what="B's deliveries delivered")
        hanging = len(slow.received)
        async with pool.acquire() as conn:
            a_done = await conn.fetchval(
                "SELECT count(*) FROM pm.webhook_delivery WHERE merchant_id = $1 AND status <> 'PENDING'", a
            )
        await slow.close()  # cut A's requests so the sender stops without waiting for them
        await asyncio.sleep(0)
    assert hanging == 4  # A's requests still in hand, A at its limit, while B's went through
    assert a_done == 0
    assert len(quick.received) == 3


async def test_an_endpoint_failing_for_days_is_disabled(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender(disable_after_s="3600")
    async with kit.Receiver(lambda _: kit.Answer(500)) as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, SETTLED)
        await conn.execute(
            """UPDATE pm.webhook_endpoint SET failing_since = now() - interval '2 hours'
               WHERE endpoint_id = $1""",
            endpoint.endpoint_id,
        )
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))

        async def disabled() -> bool:
            found = await conn.fetchval(
                """SELECT disabled_reason FROM pm.webhook_endpoint
                   WHERE endpoint_id = $1 AND status = 'DISABLED'""",
                endpoint.endpoint_id,
            )
            return bool(found and found.startswith("failing"))

        await eventually(disabled, what="the endpoint disabled after failing for longer than allowed")
    assert (await delivery(pool, endpoint.endpoint_id))["status"] == "FAILED"
    assert len(receiver.received) == 1


async def test_an_open_breaker_puts_deliveries_off_without_spending_attempts(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender(
        breaker_failures="2", breaker_cooldown_s="30", endpoint_concurrency="1", retry_schedule_s="60"
    )
    async with kit.Receiver(lambda _: kit.Answer(500)) as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, SETTLED)
        for _ in range(3):
            await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))

        async def put_off() -> bool:
            rows = await conn.fetch(
                """SELECT attempts, next_attempt_at > now() + interval '20 s' AS later
                   FROM pm.webhook_delivery WHERE endpoint_id = $1""",
                endpoint.endpoint_id,
            )
            return (
                len(rows) == 3
                and [r["attempts"] for r in rows].count(0) == 1
                and all(r["later"] for r in rows)
            )

        await eventually(put_off, what="the third delivery put off to the breaker's end, unattempted")
    assert len(receiver.received) == 2
