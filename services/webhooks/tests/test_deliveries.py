"""The sender end to end in this process, against real PostgreSQL, Redis and an HTTP receiver on
loopback: state changes on `pm:events` become signed deliveries a `standardwebhooks` verifier accepts,
exactly one per event and endpoint, with a `webhook-id` that never changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import standardwebhooks

from pm_client.api import Party
from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_shared.merchants import miniapps
from pm_shared.webhooks import signing
from pm_tools.testing import webhooks as kit
from pm_tools.testing.fixtures import eventually
from pm_webhooks import payloads

ALL_TYPES = ["intent.settled", "intent.failed", "refund.settled", "payment_request.confirmed"]


def verified(receiver: kit.Receiver, secret: str) -> list[dict[str, object]]:
    """Every body the receiver got, each verified with `secret` by the reference library."""
    hook = standardwebhooks.Webhook(secret)
    out = []
    for request in receiver.received:
        body = hook.verify(request.body, request.headers)
        assert isinstance(body, dict)
        out.append(body)
    return out


async def deliveries(pool: Pool, endpoint_id: str) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT * FROM pm.webhook_delivery WHERE endpoint_id = $1 ORDER BY id", endpoint_id
    )
    return [dict(r) for r in rows]


async def attempts(pool: Pool, endpoint_id: str) -> list[dict[str, object]]:
    rows = await pool.fetch(
        """SELECT a.* FROM pm.webhook_attempt a JOIN pm.webhook_delivery d ON d.id = a.delivery_id
           WHERE d.endpoint_id = $1 ORDER BY a.id""",
        endpoint_id,
    )
    return [dict(r) for r in rows]


async def test_each_event_is_delivered_once_signed_and_shown_as_the_api_shows_it(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    async with kit.Receiver() as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, ALL_TYPES)
        settled = await kit.merchant_intent(conn, merchant)
        failed = await kit.merchant_intent(conn, merchant, state="FAILED")
        refund = await kit.merchant_intent(
            conn, merchant, intent_type="REFUND", amount=500, original_intent_id=settled
        )
        other = await kit.merchant(conn, cipher)  # another merchant's intent goes to none of these
        elsewhere = await kit.merchant_intent(conn, other)
        for change in (
            kit.state_changed(settled, "SETTLED"),
            kit.state_changed(failed, "FAILED"),
            kit.state_changed(refund, "SETTLED"),
            kit.state_changed(elsewhere, "SETTLED"),
            kit.state_changed(settled, "SETTLED"),  # a redelivered state change
            kit.state_changed(settled, "AUTHORIZED", previous="VALIDATED"),  # makes no event
        ):
            await publish(change)

        async def all_delivered() -> bool:
            rows = await deliveries(pool, endpoint.endpoint_id)
            return len(rows) == 3 and all(r["status"] == "DELIVERED" for r in rows)

        await eventually(all_delivered, what="three deliveries DELIVERED")
    bodies = {str(b["type"]): b for b in verified(receiver, endpoint.secret)}
    assert sorted(bodies) == ["intent.failed", "intent.settled", "refund.settled"]
    assert sorted(receiver.ids()) == sorted(
        payloads.webhook_id(i, t)
        for i, t in ((settled, "intent.settled"), (failed, "intent.failed"), (refund, "refund.settled"))
    )
    assert set(receiver.ids().values()) == {1}
    data = bodies["refund.settled"]["data"]
    assert isinstance(data, dict)
    assert data["id"] == refund and data["type"] == "REFUND" and data["status"] == "SETTLED"
    assert data["amount"] == 500 and data["currency"] == "THB"
    assert data["from"] == {"kind": "merchant", "id": merchant} and data["originalIntentId"] == settled
    assert {"fees", "failureCode", "miniappId", "createdAt", "updatedAt", "to"} <= set(data)
    failure = bodies["intent.failed"]["data"]
    assert isinstance(failure, dict) and failure["failureCode"] == "declined"
    rows = await attempts(pool, endpoint.endpoint_id)
    assert [(r["attempt"], r["trigger"], r["status_code"]) for r in rows] == [(1, "initial", 200)] * 3


async def test_payment_request_confirmed_when_its_charge_leaves_created(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    async with kit.Receiver() as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, ["payment_request.confirmed"])
        app = f"app-{uuid.uuid4().hex[:8]}"
        await miniapps.create(
            conn,
            miniapp_id=app,
            merchant_id=merchant,
            name="shop",
            operations=frozenset({"MINIAPP_CHARGE"}),
            max_charge={"THB": 100_000},
            actor="tests",
        )
        request_id = uuid.uuid4()
        charge = await kit.merchant_intent(
            conn, merchant, state="VALIDATED", idempotency_key=f"payment-request:{request_id}"
        )
        found = await conn.fetchval("SELECT key_id FROM pm.merchant WHERE merchant_id = $1", merchant)
        await conn.execute(
            """INSERT INTO pm.payment_request (id, merchant_id, miniapp_id, user_id, amount, currency, status,
                   key_id, idempotency_key, request_hash, intent_id, expires_at)
               VALUES ($1, $2, $3, 'u-1', 1500, 'THB', 'CONFIRMED', $4, $5, '\\x00', $6,
                       now() + interval '1 h')""",
            request_id,
            merchant,
            app,
            found,
            str(request_id),
            uuid.UUID(charge),
        )
        # A charge whose key only looks like a request's: no request names it, so no event.
        forged = await kit.merchant_intent(
            conn, merchant, state="VALIDATED", idempotency_key=f"payment-request:{uuid.uuid4()}"
        )
        await publish(kit.state_changed(forged, "VALIDATED", previous="CREATED"))
        await publish(kit.state_changed(charge, "VALIDATED", previous="CREATED"))
        await publish(kit.state_changed(charge, "AUTHORIZED", previous="VALIDATED"))

        async def delivered() -> bool:
            rows = await deliveries(pool, endpoint.endpoint_id)
            return len(rows) == 1 and rows[0]["status"] == "DELIVERED"

        await eventually(delivered, what="the confirmation delivered")
    (body,) = verified(receiver, endpoint.secret)
    assert body["type"] == "payment_request.confirmed"
    data = body["data"]
    assert isinstance(data, dict)
    assert data["paymentRequestId"] == str(request_id) and data["id"] == charge


async def test_during_a_rotation_either_secret_verifies(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    old = signing.show(signing.new_secret())
    async with kit.Receiver() as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        rotating = await kit.endpoint(
            conn,
            cipher,
            merchant,
            receiver.url,
            ["intent.settled"],
            previous=old,
            previous_until=datetime.now(UTC) + timedelta(hours=1),
        )
        expired_old = signing.show(signing.new_secret())
        rotated = await kit.endpoint(
            conn,
            cipher,
            merchant,
            receiver.url + "?rotated",
            ["intent.settled"],
            previous=expired_old,
            previous_until=datetime.now(UTC) - timedelta(seconds=1),
        )
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))
        await eventually(lambda: _count(receiver, 2), what="both endpoints delivered")
    during = [r for r in receiver.received if "rotated" not in r.path]
    after = [r for r in receiver.received if "rotated" in r.path]
    for secret in (rotating.secret, old):
        standardwebhooks.Webhook(secret).verify(during[0].body, during[0].headers)
    assert len(during[0].headers["webhook-signature"].split(" ")) == 2
    standardwebhooks.Webhook(rotated.secret).verify(after[0].body, after[0].headers)
    assert len(after[0].headers["webhook-signature"].split(" ")) == 1
    try:
        standardwebhooks.Webhook(expired_old).verify(after[0].body, after[0].headers)
    except standardwebhooks.WebhookVerificationError:
        pass
    else:
        raise AssertionError("a secret past its rotation's end still signs")


async def _count(receiver: kit.Receiver, n: int) -> bool:
    return len(receiver.received) >= n


def test_webhook_id_is_one_per_event() -> None:
    intent = str(uuid.uuid4())
    assert payloads.webhook_id(intent, "intent.settled") == payloads.webhook_id(intent, "intent.settled")
    assert payloads.webhook_id(intent, "intent.settled") != payloads.webhook_id(intent, "intent.failed")
    assert "." not in payloads.webhook_id(intent, "intent.settled")


def test_a_body_stays_small() -> None:
    data = payloads.IntentData(
        id=str(uuid.uuid4()),
        type="MINIAPP_CHARGE",
        status="SETTLED",
        amount=2**62,
        currency="THB",
        from_=msgspec.convert({"kind": "user", "id": "u" * 64}, Party),
        to=msgspec.convert({"kind": "merchant", "id": "m" * 64}, Party),
        fees=[],
        failure_code=None,
        miniapp_id="a" * 64,
        original_intent_id=None,
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )
    assert len(payloads.body("intent.settled", datetime.now(UTC), data)) < payloads.MAX_BODY_BYTES


async def test_a_replay_is_attempted_again_with_the_same_id_and_its_actor(
    start_sender: kit.StartSender, publish: kit.Publish, pool: Pool, cipher: Cipher
) -> None:
    await start_sender()
    async with kit.Receiver() as receiver, pool.acquire() as conn:
        merchant = await kit.merchant(conn, cipher)
        endpoint = await kit.endpoint(conn, cipher, merchant, receiver.url, ["intent.settled"])
        await publish(kit.state_changed(await kit.merchant_intent(conn, merchant), "SETTLED"))

        async def delivered_times(n: int) -> bool:
            rows = await attempts(pool, endpoint.endpoint_id)
            return len(rows) == n and rows[-1]["status_code"] == 200

        await eventually(lambda: delivered_times(1), what="delivered")
        # What the admin API does for a replay (docs/webhooks-api.md).
        await conn.execute(
            """UPDATE pm.webhook_delivery SET status = 'PENDING', next_attempt_at = now(),
                   replay_by = 'ops@pm' WHERE endpoint_id = $1""",
            endpoint.endpoint_id,
        )
        await eventually(lambda: delivered_times(2), what="replayed")
    rows = await attempts(pool, endpoint.endpoint_id)
    assert [(r["attempt"], r["trigger"], r["actor"]) for r in rows] == [
        (1, "initial", None),
        (2, "replay", "ops@pm"),
    ]
    assert list(receiver.ids().values()) == [2]
    (row,) = await deliveries(pool, endpoint.endpoint_id)
    assert row["status"] == "DELIVERED" and row["replay_by"] is None
