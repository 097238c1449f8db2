"""`POST /v1/intents`: validation, idempotency, back-pressure, `Prefer: wait`; and the read API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from pm_client.api import AMOUNT_MAX
from pm_shared import db, thaiqr
from pm_shared.messages import IntentStateChanged, IntentSubmitted, Party, new_message_id, now
from pm_shared.streams import Publisher
from pm_shared.streams.names import EVENTS, INTENTS, stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing.gateway import Gateway

INTENTS_KEY = stream_key(INTENTS.name, 0)
_submitted = msgspec.json.Decoder(IntentSubmitted)


def p2p(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "P2P",
        "amount": 10_000,
        "currency": "THB",
        "from": {"kind": "user", "id": "u-1001"},
        "to": {"kind": "user", "id": "u-1002"},
        "fromName": "Somchai",
        "toName": "Anna",
        "comment": "dinner",
        "requiresMonitoring": False,
        "metadata": {},
    }
    body.update(changes)
    return body


def problem(response: Any) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    decoded: dict[str, Any] = msgspec.json.decode(response.content)
    return decoded


async def published(redis: Redis) -> list[IntentSubmitted]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(INTENTS_KEY)  # type: ignore[assignment]
    return [_submitted.decode(fields[PAYLOAD_FIELD]) for _, fields in entries]


async def test_an_intent_is_accepted_recorded_and_published(gateway: Gateway, redis: Redis) -> None:
    response = await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "a-1"})
    assert response.status_code == 202, response.text
    body = msgspec.json.decode(response.content)
    assert uuid.UUID(body["id"]).version == 7
    assert body["status"] == "CREATED" and body["amount"] == 10_000 and body["fees"] == []
    assert body["from"] == {"kind": "user", "id": "u-1001"} and body["fromName"] == "Somchai"
    assert body["links"] == {"self": f"/v1/intents/{body['id']}"}
    assert response.headers["location"] == body["links"]["self"]
    (message,) = await published(redis)
    assert (
        message.intent_id == body["id"] and message.amount == 10_000 and message.key_id == gateway.user.key_id
    )
    assert message.source.kind == "user" and message.target.id == "u-1002" and message.comment == "dinner"

    got = await gateway.send("GET", f"/v1/intents/{body['id']}")
    assert got.status_code == 200
    intent = msgspec.json.decode(got.content)
    assert intent["status"] == "CREATED"
    assert [t["state"] for t in intent["timeline"]] == ["CREATED"]
    assert intent == body  # the 202 was built without reading the row back: it must say the same


async def test_the_same_key_and_body_is_the_same_intent(gateway: Gateway, redis: Redis) -> None:
    first = await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "same"})
    again = await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "same"})
    assert first.status_code == again.status_code == 202
    assert msgspec.json.decode(first.content)["id"] == msgspec.json.decode(again.content)["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await published(redis)) == 1


async def test_the_same_key_with_another_body_is_a_conflict(gateway: Gateway, redis: Redis) -> None:
    assert (
        await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "k"})
    ).status_code == 202
    response = await gateway.send("POST", "/v1/intents", p2p(amount=10_001), headers={"Idempotency-Key": "k"})
    assert response.status_code == 409
    assert problem(response)["code"] == "idempotency_key_reused"
    assert len(await published(redis)) == 1


async def test_twenty_concurrent_identical_requests_make_one_intent(gateway: Gateway, redis: Redis) -> None:
    responses = await asyncio.gather(
        *(gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "burst"}) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {202}
    assert len({msgspec.json.decode(r.content)["id"] for r in responses}) == 1
    assert len(await published(redis)) == 1
    pool = await db.create_pool(gateway.settings.database_url, max_size=1)
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM pm.intent WHERE key_id = $1 AND idempotency_key = 'burst'",
            gateway.user.key_id,
        )
    await pool.close()
    assert count == 1


async def test_concurrent_requests_are_written_together_each_as_its_own_intent(
    gateway: Gateway, redis: Redis
) -> None:
    before = _batches_above_one()
    responses = await asyncio.gather(
        *(
            gateway.send("POST", "/v1/intents", p2p(amount=10_000 + n), headers={"Idempotency-Key": f"g-{n}"})
            for n in range(40)
        ),
        # A twin of one of them, in the same burst: the same intent, not a second one.
        gateway.send("POST", "/v1/intents", p2p(amount=10_007), headers={"Idempotency-Key": "g-7"}),
    )

    assert [r.status_code for r in responses] == [202] * 41, [
        r.text for r in responses if r.status_code != 202
    ]
    ids = [msgspec.json.decode(r.content)["id"] for r in responses]
    assert len(set(ids)) == 40 and ids[40] == ids[7]
    assert sorted(m.amount for m in await published(redis)) == [10_000 + n for n in range(40)]
    pool = await db.create_pool(gateway.settings.database_url, max_size=1)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT i.amount, (SELECT count(*) FROM pm.intent_event e WHERE e.intent_id = i.id) AS events,
                   (SELECT count(*) FROM pm.outbox o WHERE o.intent_id = i.id::text) AS outbox
            FROM pm.intent AS i WHERE i.key_id = $1 AND i.idempotency_key LIKE 'g-%'
            """,
            gateway.user.key_id,
        )
    await pool.close()
    assert sorted(r["amount"] for r in rows) == [10_000 + n for n in range(40)]
    assert {(r["events"], r["outbox"]) for r in rows} == {(1, 1)}
    assert _batches_above_one() > before  # some of them shared a statement (group commit)


def _batches_above_one() -> float:
    """Intake statements that wrote more than one intent, so far in this process."""
    total = REGISTRY.get_sample_value("pm_gateway_intake_batch_size_count") or 0.0
    lone = REGISTRY.get_sample_value("pm_gateway_intake_batch_size_bucket", {"le": "1.0"}) or 0.0
    return total - lone


async def test_the_idempotency_key_is_required(gateway: Gateway, redis: Redis) -> None:
    response = await gateway.send("POST", "/v1/intents", p2p())
    assert response.status_code == 400 and problem(response)["code"] == "idempotency_key_missing"
    assert await published(redis) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "body_missing"),
        (msgspec.json.encode(p2p(amount=100.5)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(amount=100.0)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(amount="100")), 422, "validation_failed"),
        (msgspec.json.encode(p2p(amount=0)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(amount=-5)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(amount=AMOUNT_MAX + 1)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(amount=2**64)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(currency="XYZ")), 422, "validation_failed"),
        (msgspec.json.encode(p2p(currency="thb")), 422, "validation_failed"),
        (msgspec.json.encode(p2p(type="LOAN")), 422, "validation_failed"),
        (msgspec.json.encode({k: v for k, v in p2p().items() if k != "to"}), 422, "validation_failed"),
        (msgspec.json.encode(p2p(comment="x" * 501)), 422, "validation_failed"),
        (msgspec.json.encode(p2p(surprise=1)), 422, "validation_failed"),
        (
            msgspec.json.encode(
                p2p(to={"kind": "promptpay", "proxyType": "MSISDN", "proxyValue": "0812345678"})
            ),
            422,
            "invalid_parties",
        ),
        (msgspec.json.encode(p2p(to={"kind": "user", "id": "u-1001"})), 422, "invalid_parties"),
        (msgspec.json.encode(p2p(metadata={"k": "v" * 300})), 422, "validation_failed"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_published(
    gateway: Gateway, redis: Redis, body: bytes, status: int, code: str
) -> None:
    response = await gateway.send("POST", "/v1/intents", body, headers={"Idempotency-Key": "bad"})
    assert response.status_code == status, response.text
    assert problem(response)["code"] == code
    assert await published(redis) == []


async def test_an_oversized_body_is_refused(gateway: Gateway, redis: Redis) -> None:
    body = msgspec.json.encode(p2p(metadata={f"k{i}": "v" * 250 for i in range(400)}))
    assert len(body) > gateway.settings.max_body_bytes
    response = await gateway.send("POST", "/v1/intents", body, headers={"Idempotency-Key": "big"})
    assert response.status_code == 413 and problem(response)["code"] == "body_too_large"
    assert await published(redis) == []


async def test_back_pressure_is_a_503_with_retry_after(gateway: Gateway, redis: Redis) -> None:
    # Fill pm:intents past the threshold with entries nobody consumes.
    filler = Publisher(redis, threshold=10**9)
    message = IntentSubmitted(
        intent_id="filler",
        message_id=new_message_id(),
        produced_at=now(),
        type="P2P",
        amount=1,
        currency="THB",
        source=Party(kind="user", id="a"),
        target=Party(kind="user", id="b"),
        key_id="x",
    )
    await filler.publish_many(INTENTS, [message] * gateway.settings.backpressure_threshold)
    response = await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "full"})
    assert response.status_code == 503, response.text
    assert problem(response)["code"] == "backpressure"
    assert int(response.headers["retry-after"]) >= 1
    assert await redis.xlen(INTENTS_KEY) == gateway.settings.backpressure_threshold
    got = await gateway.send("GET", "/v1/intents")
    assert msgspec.json.decode(got.content)["items"] == []  # and nothing was recorded


async def test_prefer_wait_answers_when_the_intent_becomes_terminal(gateway: Gateway, redis: Redis) -> None:
    created = await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "w"})
    intent_id = msgspec.json.decode(created.content)["id"]

    async def settle_later() -> None:
        await asyncio.sleep(0.5)
        pool = await db.create_pool(gateway.settings.database_url, max_size=1)
        async with pool.acquire() as conn:
            await conn.execute("UPDATE pm.intent SET state = 'SETTLED' WHERE id = $1", uuid.UUID(intent_id))
        await pool.close()
        event = IntentStateChanged(
            intent_id=intent_id,
            message_id=new_message_id(),
            produced_at=now(),
            state="SETTLED",
            previous="CREATED",
        )
        await Publisher(redis).publish(EVENTS, event)

    settling = asyncio.create_task(settle_later())
    started = asyncio.get_running_loop().time()
    response = await gateway.send("GET", f"/v1/intents/{intent_id}", headers={"Prefer": "wait=10"})
    elapsed = asyncio.get_running_loop().time() - started
    await settling
    assert response.status_code == 200
    assert msgspec.json.decode(response.content)["status"] == "SETTLED"
    assert 0.4 < elapsed < 5, elapsed  # woken by the event, not by the 10 s deadline
    assert response.headers["preference-applied"] == "wait=10"


async def test_prefer_wait_gives_up_after_n_seconds(gateway: Gateway) -> None:
    created = await gateway.send(
        "POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "w2", "Prefer": "wait=1"}
    )
    assert created.status_code == 202
    assert msgspec.json.decode(created.content)["status"] == "CREATED"


async def test_intents_are_listed_newest_first_by_cursor(gateway: Gateway) -> None:
    ids = []
    for n in range(5):
        response = await gateway.send(
            "POST", "/v1/intents", p2p(amount=100 + n), headers={"Idempotency-Key": f"l{n}"}
        )
        ids.append(msgspec.json.decode(response.content)["id"])
    seen: list[str] = []
    cursor = None
    while True:
        path = "/v1/intents?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = msgspec.json.decode((await gateway.send("GET", path)).content)
        seen += [i["id"] for i in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    # Another key sees none of them; an admin key sees them all.
    other = msgspec.json.decode((await gateway.send("GET", "/v1/intents", key=gateway.admin)).content)
    assert set(ids) <= {i["id"] for i in other["items"]}


async def test_unknown_and_foreign_intents_are_not_found(gateway: Gateway) -> None:
    response = await gateway.send("GET", f"/v1/intents/{uuid.uuid4()}")
    assert response.status_code == 404 and problem(response)["code"] == "intent_not_found"
    response = await gateway.send("GET", "/v1/intents/not-a-uuid")
    assert response.status_code == 404
    created = await gateway.send(
        "POST", "/v1/intents", p2p(), key=gateway.admin, headers={"Idempotency-Key": "adm"}
    )
    foreign = msgspec.json.decode(created.content)["id"]
    assert (await gateway.send("GET", f"/v1/intents/{foreign}")).status_code == 404


async def test_request_ids_are_echoed(gateway: Gateway) -> None:
    response = await gateway.send("GET", "/v1/intents", headers={"X-Request-Id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    generated = await gateway.send("GET", "/v1/nowhere")
    assert generated.status_code == 404 and problem(generated)["code"] == "not_found"


def withdrawal(payload: str, amount: int = 10_000) -> dict[str, Any]:
    return {
        "type": "PROMPTPAY_WITHDRAWAL",
        "amount": amount,
        "currency": "THB",
        "from": {"kind": "user", "id": "u-1001"},
        "to": {"kind": "thaiqr", "payload": payload},
    }


async def test_a_scanned_thai_qr_is_checked_at_intake(gateway: Gateway, redis: Redis) -> None:
    good = thaiqr.generate_credit_transfer("mobile", "0812345678", amount=10_000)
    accepted = await gateway.send(
        "POST", "/v1/intents", withdrawal(good), headers={"Idempotency-Key": "qr-1"}
    )
    assert accepted.status_code == 202, accepted.text
    assert len(await published(redis)) == 1

    # One character of the CRC changed: refused, nothing recorded or published.
    bad_crc = good[:-1] + ("0" if good[-1] != "0" else "1")
    refused = await gateway.send(
        "POST", "/v1/intents", withdrawal(bad_crc), headers={"Idempotency-Key": "qr-2"}
    )
    assert refused.status_code == 422
    body = problem(refused)
    assert body["code"] == "invalid_thai_qr"
    assert body["errors"][0]["path"] == "$.to.payload" and body["errors"][0]["message"].startswith("bad_crc")

    # A QR that asks for another amount than the intent's.
    other = await gateway.send(
        "POST", "/v1/intents", withdrawal(good, 9_999), headers={"Idempotency-Key": "qr-3"}
    )
    assert other.status_code == 422 and problem(other)["code"] == "qr_amount_mismatch"
    assert len(await published(redis)) == 1
