"""IPPS refund callbacks (`transfer.returned`) on the gateway: the same checks as every IPPS callback
(allowlist, signature at most 300 s old, body shape, dedupe on the event id), then one `PspHint` with
its `refund_id` per event. The gateway credits nothing: the adapter asks IPPS (tests/test_psp_refunds.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_gateway.settings import Settings
from pm_shared.messages import PspHint, psp_key

IPPS_SECRET = "ipps-test-secret"  # what conftest's `webhook_settings` gives the gateway
IPPS_KEY = "{pm:psp:ipps:hints:0}"

ReadHints = Callable[[Redis, str], Awaitable[list[PspHint]]]


def refund_callback(key: str, *, event_id: str = "evt_1", refund_id: str = "rfd_1", **changes: Any) -> Any:
    """A `transfer.returned` callback as the IPPS sandbox sends it, as JSON-able data."""
    transfer_id = "trf_" + hashlib.sha256(key.encode()).hexdigest()[:20]
    transfer = {"transfer_id": transfer_id, "idempotency_key": key, "amount": 10_000, "status": "SUCCESS"}
    refund = {
        "refund_id": refund_id,
        "transfer_id": transfer_id,
        "idempotency_key": key,
        "amount": 4_000,
        "currency": "THB",
        "status": "COMPLETED",
        "created_at": "2026-11-24T20:00:00.000Z",
    }
    body = {"event": "transfer.returned", "event_id": event_id, "sequence": 3, "transfer": transfer}
    return {**body, "refund": refund, **changes}


def signed(data: Any, *, secret: str = IPPS_SECRET, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode(data)
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-IPPS-Signature": f"t={t},v1={mac}"}


async def post(url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url + "/v1/webhooks/ipps", content=body, headers=headers)


async def nothing_written(redis: Redis) -> bool:
    return await redis.xlen(IPPS_KEY) == 0 and not [k async for k in redis.scan_iter(match="pm:webhooks:*")]


async def test_a_refund_callback_is_one_hint_with_its_refund_id_per_event(
    gw: str, clean: Redis, read_hints: ReadHints
) -> None:
    intent_id = str(uuid.uuid4())
    key = psp_key(intent_id, "psp_payout")
    data = refund_callback(key, event_id="evt_a", refund_id="rfd_a")

    first = await post(gw, *signed(data))
    again = await post(gw, *signed(data, at=int(time.time()) - 10))  # a redelivery, signed anew
    renewed = await post(gw, *signed({**data, "event_id": "evt_b"}))  # the refund notified again

    assert [r.json() for r in (first, again, renewed)] == [
        {"accepted": True, "duplicate": False},
        {"accepted": True, "duplicate": True},
        {"accepted": True, "duplicate": False},
    ]
    hints = await read_hints(clean, IPPS_KEY)
    assert [(h.refund_id, h.event_id) for h in hints] == [
        ("rfd_a", "refund:evt_a"),
        ("rfd_a", "refund:evt_b"),
    ]
    transfer_id = data["transfer"]["transfer_id"]
    for hint in hints:
        assert (hint.psp, hint.intent_id, hint.idempotency_key) == ("ipps", intent_id, key)
        assert (hint.psp_reference, hint.claimed_status) == (transfer_id, "COMPLETED")
    assert hints[0].message_id != hints[1].message_id
    assert await clean.exists("pm:webhooks:seen:ipps:refund:evt_a")


def _malformed(key: str) -> dict[str, Any]:
    good = refund_callback(key)
    other = refund_callback(psp_key(str(uuid.uuid4()), "psp_payout"))
    return {
        "returned without a refund": {k: v for k, v in good.items() if k != "refund"},
        "returned without an event id": {k: v for k, v in good.items() if k != "event_id"},
        "a refund on a status event": {**good, "event": "transfer.succeeded"},
        "a refund of another transfer": {**good, "refund": other["refund"]},
        "a refund without its id": {**good, "refund": {**good["refund"], "refund_id": None}},
        "a refund id with a space": {**good, "refund": {**good["refund"], "refund_id": "rfd 1"}},
        "a negative amount": {**good, "refund": {**good["refund"], "amount": -1}},
    }


async def test_a_malformed_refund_callback_is_4xx_and_changes_nothing(gw: str, clean: Redis) -> None:
    for name, data in _malformed(psp_key(str(uuid.uuid4()), "psp_payout")).items():
        response = await post(gw, *signed(data))
        assert response.status_code in (400, 422), (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        if name.startswith(("returned", "a refund on", "a refund of")):
            assert response.json()["code"] == "invalid_callback", name
    assert await nothing_written(clean)


async def test_a_forged_or_stale_refund_callback_is_401_and_changes_nothing(gw: str, clean: Redis) -> None:
    data = refund_callback(psp_key(str(uuid.uuid4()), "psp_payout"))
    body, good = signed(data)
    forged = await post(gw, *signed(data, secret="forged"))
    stale = await post(gw, *signed(data, at=int(time.time()) - 301))
    lying = await post(gw, body.replace(b"4000", b"9000"), good)  # signed another body
    for response in (forged, stale, lying):
        assert (response.status_code, response.json()["code"]) == (401, "invalid_signature"), response.text
    assert await nothing_written(clean)


@pytest.fixture
async def strict_gw(
    clean: Redis,
    webhook_settings: Callable[..., Settings],
    serve_gateway: Callable[[Settings], AbstractAsyncContextManager[str]],
) -> AsyncIterator[str]:
    async with serve_gateway(webhook_settings(PM_GATEWAY_IPPS_CALLBACK_ALLOWLIST="10.0.0.0/8")) as url:
        yield url


async def test_a_refund_callback_from_off_the_allowlist_is_403_and_changes_nothing(
    strict_gw: str, clean: Redis
) -> None:
    response = await post(strict_gw, *signed(refund_callback(psp_key(str(uuid.uuid4()), "psp_payout"))))
    assert (response.status_code, response.json()["code"]) == (403, "forbidden_source")
    assert await nothing_written(clean)
