"""PSP callbacks on the gateway: verified, allowlisted, deduplicated, passed on as `PspHint`s.

The gateway runs for real (uvicorn, real Redis database `PM_TEST_REDIS_DB`, the session's PostgreSQL;
its fixtures are in conftest.py); callbacks are signed here as the PSPs' wire formats say. The
sandboxes' own callbacks are in test_webhook_sandboxes.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import msgspec
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from pm_gateway.settings import Settings
from pm_shared.messages import PspHint, psp_key
from pm_shared.streams.names import IPPS_HINTS
from pm_tools.processes import free_port
from pm_tools.testing.gateway import delete_streams

IPPS_SECRET = "ipps-test-secret"  # the callback secrets `webhook_settings` gives the gateway
QP_SECRET = "qp-test-secret"
IPPS_KEY = "{pm:psp:ipps:hints:0}"
QP_KEY = "{pm:psp:qp:hints:0}"

WebhookSettings = Callable[..., Settings]
ServeGateway = Callable[[Settings], AbstractAsyncContextManager[str]]
ReadHints = Callable[[Redis, str], Awaitable[list[PspHint]]]


# --- what the gateway wrote -----------------------------------------------------------------------


async def marks(redis: Redis) -> list[bytes]:
    return [k async for k in redis.scan_iter(match="pm:webhooks:seen:*")]


async def assert_nothing_written(redis: Redis) -> None:
    assert await redis.xlen(IPPS_KEY) == 0
    assert await redis.xlen(QP_KEY) == 0
    assert await marks(redis) == []


def counted(psp: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("pm_webhook_callbacks_total", {"psp": psp, "outcome": outcome}) or 0.0


# --- callbacks signed as the wire formats say -----------------------------------------------------


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def ipps_body(
    key: str, *, event: str = "transfer.succeeded", sequence: int = 2, status: str = "SUCCESS"
) -> bytes:
    transfer = {
        "transfer_id": "trf_" + hashlib.sha256(key.encode()).hexdigest()[:20],
        "idempotency_key": key,
        "inquiry_id": "inq_1",
        "amount": 10_000,
        "fee": 0,
        "status": status,
        "trans_ref": "0002123123121200011" if status == "SUCCESS" else None,
        "failure_code": None,
        "created_at": "2026-11-24T20:00:00Z",
        "updated_at": "2026-11-24T20:00:01Z",
    }
    return msgspec.json.encode({"event": event, "sequence": sequence, "transfer": transfer})


def ipps_headers(body: bytes, *, secret: str = IPPS_SECRET, at: int | None = None) -> dict[str, str]:
    t = int(time.time()) if at is None else at
    return {
        "Content-Type": "application/json",
        "X-IPPS-Signature": f"t={t},v1={_hex(secret, f'{t}.'.encode() + body)}",
    }


def qp_body(order: str, *, seq: int = 3, status: str = "ACCEPTED", event_id: str | None = None) -> bytes:
    qr_id = "AD" + hashlib.sha256(order.encode()).hexdigest()[:30].upper()
    return msgspec.json.encode(
        {
            "event_id": event_id or f"{qr_id}-{seq}",
            "seq": seq,
            "qr_id": qr_id,
            "order": order,
            "status": status,
            "amount": 10_000,
            "currency": "RUB",
            "merchant_id": "MA0000000552",
            "transaction_id": "T1" if status == "ACCEPTED" else None,
            "occurred_at": "2026-11-24T20:00:00Z",
        }
    )


def qp_headers(body: bytes, *, secret: str = QP_SECRET, at: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-QP-Timestamp": ts,
        "X-QP-Signature": _hex(secret, ts.encode() + b"." + body),
    }


async def post(url: str, body: bytes, headers: Mapping[str, str | bytes]) -> httpx.Response:
    raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, content=body, headers=raw)


# --- accepted ------------------------------------------------------------------------------------


async def test_a_valid_ipps_callback_becomes_exactly_one_hint(
    gw: str, clean: Redis, read_hints: ReadHints
) -> None:
    intent_id = str(uuid.uuid4())
    key = psp_key(intent_id, "payout")
    body = ipps_body(key)
    before = counted("ipps", "accepted")

    # No X-PM-* headers at all: PSPs have no service key.
    response = await post(gw + "/v1/webhooks/ipps", body, ipps_headers(body))

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": True, "duplicate": False}
    [hint] = await read_hints(clean, IPPS_KEY)
    transfer_id = msgspec.json.decode(body)["transfer"]["transfer_id"]
    assert (hint.psp, hint.intent_id, hint.idempotency_key) == ("ipps", intent_id, key)
    assert (hint.psp_reference, hint.claimed_status) == (transfer_id, "SUCCESS")
    assert hint.event_id == f"{transfer_id}:transfer.succeeded:2"
    assert await clean.xlen(QP_KEY) == 0
    mark = f"pm:webhooks:seen:ipps:{transfer_id}:transfer.succeeded:2"
    assert await clean.exists(mark)
    assert 7 * 86_400 - 60 < await clean.ttl(mark) <= 7 * 86_400
    assert counted("ipps", "accepted") == before + 1


async def test_a_valid_qp_callback_becomes_exactly_one_hint(
    gw: str, clean: Redis, read_hints: ReadHints
) -> None:
    intent_id = str(uuid.uuid4())
    order = psp_key(intent_id, "collect")
    body = qp_body(order, seq=3, status="ACCEPTED")
    sent = msgspec.json.decode(body)

    response = await post(gw + "/v1/webhooks/qp", body, qp_headers(body))

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": True, "duplicate": False}
    [hint] = await read_hints(clean, QP_KEY)
    assert (hint.psp, hint.intent_id, hint.idempotency_key) == ("qp", intent_id, order)
    assert (hint.psp_reference, hint.claimed_status, hint.event_id) == (
        sent["qr_id"],
        "ACCEPTED",
        sent["event_id"],
    )
    assert await clean.xlen(IPPS_KEY) == 0
    assert await marks(clean) == [f"pm:webhooks:seen:qp:{sent['event_id']}".encode()]


async def test_a_key_that_names_no_intent_gives_a_hint_with_an_empty_intent_id(
    gw: str, clean: Redis, read_hints: ReadHints
) -> None:
    body = qp_body("merchant-order-77")
    response = await post(gw + "/v1/webhooks/qp", body, qp_headers(body))
    assert response.status_code == 200, response.text
    [hint] = await read_hints(clean, QP_KEY)
    assert (hint.intent_id, hint.idempotency_key) == ("", "merchant-order-77")


async def test_the_same_callback_twice_is_acknowledged_twice_and_passed_on_once(
    gw: str, clean: Redis, read_hints: ReadHints
) -> None:
    ipps = ipps_body(psp_key(str(uuid.uuid4()), "payout"))
    qp = qp_body(psp_key(str(uuid.uuid4()), "collect"))
    before = counted("ipps", "duplicate")

    first = await post(gw + "/v1/webhooks/ipps", ipps, ipps_headers(ipps))
    # A redelivery is signed anew (another timestamp): still the same event.
    again = await post(gw + "/v1/webhooks/ipps", ipps, ipps_headers(ipps, at=int(time.time()) - 5))
    qp_first = await post(gw + "/v1/webhooks/qp", qp, qp_headers(qp))
    qp_again = await post(gw + "/v1/webhooks/qp", qp, qp_headers(qp))

    assert [r.status_code for r in (first, again, qp_first, qp_again)] == [200, 200, 200, 200]
    assert [r.json()["duplicate"] for r in (first, again, qp_first, qp_again)] == [False, True, False, True]
    assert len(await read_hints(clean, IPPS_KEY)) == 1
    assert len(await read_hints(clean, QP_KEY)) == 1
    assert counted("ipps", "duplicate") == before + 1


async def test_out_of_order_callbacks_are_all_passed_on_in_arrival_order(
    gw: str, clean: Redis, read_hints: ReadHints
) -> None:
    key = psp_key(str(uuid.uuid4()), "payout")
    final = ipps_body(key, event="transfer.succeeded", sequence=2, status="SUCCESS")
    stale = ipps_body(key, event="transfer.pending", sequence=1, status="PENDING")
    order = psp_key(str(uuid.uuid4()), "collect")
    qp_final = qp_body(order, seq=3, status="ACCEPTED")
    qp_stale = qp_body(order, seq=2, status="IN_PROGRESS")

    for url, body, headers in (
        ("/v1/webhooks/ipps", final, ipps_headers(final)),
        ("/v1/webhooks/ipps", stale, ipps_headers(stale)),
        ("/v1/webhooks/qp", qp_final, qp_headers(qp_final)),
        ("/v1/webhooks/qp", qp_stale, qp_headers(qp_stale)),
    ):
        response = await post(gw + url, body, headers)
        assert response.json() == {"accepted": True, "duplicate": False}, response.text

    assert [h.claimed_status for h in await read_hints(clean, IPPS_KEY)] == ["SUCCESS", "PENDING"]
    assert [h.claimed_status for h in await read_hints(clean, QP_KEY)] == ["ACCEPTED", "IN_PROGRESS"]
    ids = [h.message_id for h in await read_hints(clean, IPPS_KEY)]
    assert len(set(ids)) == 2


# --- refused: nothing changes --------------------------------------------------------------------


def _ipps_refusals(body: bytes) -> dict[str, Mapping[str, str | bytes]]:
    good = ipps_headers(body)
    t = int(time.time())
    mac = good["X-IPPS-Signature"].split("v1=")[1]
    return {
        "wrong secret": ipps_headers(body, secret="forged"),
        "stale timestamp": ipps_headers(body, at=t - 330),
        "future timestamp": ipps_headers(body, at=t + 330),
        "missing header": {"Content-Type": "application/json"},
        "empty header": {**good, "X-IPPS-Signature": ""},
        "no v1": {**good, "X-IPPS-Signature": f"t={t}"},
        "no t": {**good, "X-IPPS-Signature": f"v1={mac}"},
        "t replaced": {**good, "X-IPPS-Signature": f"t={t - 1},v1={mac}"},
        "non-ascii v1": {**good, "X-IPPS-Signature": f"t={t},v1={mac[:-1]}\u00e9".encode("latin-1")},
        "signed another body": ipps_headers(body.replace(b"SUCCESS", b"FAILED")),
    }


def _qp_refusals(body: bytes) -> dict[str, Mapping[str, str | bytes]]:
    good = qp_headers(body)
    t = int(time.time())
    return {
        "wrong secret": qp_headers(body, secret="forged"),
        "stale timestamp": qp_headers(body, at=t - 330),
        "missing signature": {k: v for k, v in good.items() if k != "X-QP-Signature"},
        "missing timestamp": {k: v for k, v in good.items() if k != "X-QP-Timestamp"},
        "timestamp replaced": {**good, "X-QP-Timestamp": str(t - 1)},
        "timestamp not a number": {**good, "X-QP-Timestamp": "+" + good["X-QP-Timestamp"]},
        "signed another body": qp_headers(body.replace(b"ACCEPTED", b"REJECTED")),
    }


async def test_a_forged_or_stale_callback_is_401_and_changes_nothing(gw: str, clean: Redis) -> None:
    ipps = ipps_body(psp_key(str(uuid.uuid4()), "payout"))
    qp = qp_body(psp_key(str(uuid.uuid4()), "collect"))
    before = counted("ipps", "invalid_signature") + counted("qp", "invalid_signature")
    cases = [("/v1/webhooks/ipps", ipps, name, h) for name, h in _ipps_refusals(ipps).items()]
    cases += [("/v1/webhooks/qp", qp, name, h) for name, h in _qp_refusals(qp).items()]

    for path, body, name, headers in cases:
        response = await post(gw + path, body, headers)
        assert response.status_code == 401, (path, name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "invalid_signature", (path, name)

    await assert_nothing_written(clean)
    after = counted("ipps", "invalid_signature") + counted("qp", "invalid_signature")
    assert after == before + len(cases)
    # The same bodies, signed properly, are accepted: the refusals were about the signatures.
    assert (await post(gw + "/v1/webhooks/ipps", ipps, ipps_headers(ipps))).status_code == 200
    assert (await post(gw + "/v1/webhooks/qp", qp, qp_headers(qp))).status_code == 200


async def test_a_callback_from_off_the_allowlist_is_403_and_changes_nothing(
    clean: Redis, webhook_settings: WebhookSettings, serve_gateway: ServeGateway
) -> None:
    settings = webhook_settings(
        PM_GATEWAY_IPPS_CALLBACK_ALLOWLIST="10.0.0.0/8",
        PM_GATEWAY_QP_CALLBACK_ALLOWLIST="192.0.2.1,::2",
    )
    ipps = ipps_body(psp_key(str(uuid.uuid4()), "payout"))
    qp = qp_body(psp_key(str(uuid.uuid4()), "collect"))
    before = counted("qp", "forbidden_source")
    async with serve_gateway(settings) as url:
        # Validly signed, and claiming an allowed address: the header is not believed from an untrusted peer.
        first = await post(
            url + "/v1/webhooks/ipps", ipps, {**ipps_headers(ipps), "X-Forwarded-For": "10.1.2.3"}
        )
        second = await post(url + "/v1/webhooks/qp", qp, {**qp_headers(qp), "X-Forwarded-For": "192.0.2.1"})
        forged = await post(url + "/v1/webhooks/qp", qp, qp_headers(qp, secret="forged"))
    for response in (first, second, forged):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden_source"
    await assert_nothing_written(clean)
    assert counted("qp", "forbidden_source") == before + 2


async def test_x_forwarded_for_counts_only_through_trusted_proxies(
    clean: Redis, webhook_settings: WebhookSettings, serve_gateway: ServeGateway, read_hints: ReadHints
) -> None:
    settings = webhook_settings(
        PM_GATEWAY_IPPS_CALLBACK_ALLOWLIST="10.1.2.3/32",
        PM_GATEWAY_CALLBACK_TRUSTED_PROXIES="127.0.0.0/8, 10.9.0.0/16",
    )
    key = psp_key(str(uuid.uuid4()), "payout")
    body = ipps_body(key)
    async with serve_gateway(settings) as url:
        # The caller wrote an allowed address left of where our proxy saw it coming from: not believed.
        spoofed = await post(
            url + "/v1/webhooks/ipps", body, {**ipps_headers(body), "X-Forwarded-For": "10.1.2.3, 192.0.2.7"}
        )
        garbage = await post(
            url + "/v1/webhooks/ipps", body, {**ipps_headers(body), "X-Forwarded-For": "nonsense"}
        )
        direct = await post(url + "/v1/webhooks/ipps", body, ipps_headers(body))
        assert [spoofed.status_code, garbage.status_code, direct.status_code] == [403, 403, 403]
        await assert_nothing_written(clean)
        # The caller, then one more of our proxies, then the peer (also ours).
        through = await post(
            url + "/v1/webhooks/ipps", body, {**ipps_headers(body), "X-Forwarded-For": "10.1.2.3, 10.9.0.4"}
        )
    assert through.status_code == 200, through.text
    assert len(await read_hints(clean, IPPS_KEY)) == 1


async def test_a_malformed_callback_is_4xx_and_changes_nothing(gw: str, clean: Redis) -> None:
    before = counted("ipps", "malformed")
    good = msgspec.json.decode(ipps_body("k"))
    missing_key = msgspec.json.encode({**good, "transfer": {**good["transfer"], "idempotency_key": None}})
    cases = {
        b"{not json": (400, "malformed_json"),
        b"": (400, "body_missing"),
        b"[]": (422, "validation_failed"),
        b'{"event": "transfer.succeeded", "sequence": 2}': (422, "validation_failed"),
        missing_key: (422, "validation_failed"),
        msgspec.json.encode({**good, "sequence": "2"}): (422, "validation_failed"),
        msgspec.json.encode({**good, "event": "x" * 129}): (422, "validation_failed"),
    }
    for body, (status, code) in cases.items():
        response = await post(gw + "/v1/webhooks/ipps", body, ipps_headers(body))
        assert (response.status_code, response.json()["code"]) == (status, code), body
    qp = msgspec.json.encode({"event_id": "e1", "seq": 1, "qr_id": "AD1", "status": "ACCEPTED"})  # no order
    response = await post(gw + "/v1/webhooks/qp", qp, qp_headers(qp))
    assert (response.status_code, response.json()["code"]) == (422, "validation_failed")
    await assert_nothing_written(clean)
    assert counted("ipps", "malformed") == before + len(cases)


# --- Redis full or away: 503, so the PSP retries -------------------------------------------------


async def test_hints_over_the_threshold_are_503_backpressure_and_nothing_is_marked(
    clean: Redis, webhook_settings: WebhookSettings, serve_gateway: ServeGateway
) -> None:
    settings = webhook_settings(PM_STREAM_BACKPRESSURE_THRESHOLD="1")
    # One hint nobody has read yet: the adapter's group is at the threshold.
    await clean.xadd(QP_KEY, {b"m": b"{}"})
    body = qp_body(psp_key(str(uuid.uuid4()), "collect"))
    async with serve_gateway(settings) as url:
        response = await post(url + "/v1/webhooks/qp", body, qp_headers(body))
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "backpressure"
        assert int(response.headers["retry-after"]) >= 1
        assert await clean.xlen(QP_KEY) == 1
        assert await marks(clean) == []
        # Once the adapter has read and acked it, the PSP's retry goes through.
        read: Any = await clean.xreadgroup("adapter-qp", "test", {QP_KEY: ">"}, count=10)
        await clean.xack(QP_KEY, "adapter-qp", *[entry_id for entry_id, _ in read[0][1]])
        await asyncio.sleep(0.15)  # past the publisher's cached reading
        retried = await post(url + "/v1/webhooks/qp", body, qp_headers(body))
    assert retried.status_code == 200, retried.text
    assert await clean.xlen(QP_KEY) == 2


async def test_an_unprovisioned_hints_stream_is_503_and_nothing_is_marked(gw: str, clean: Redis) -> None:
    await delete_streams(clean, IPPS_HINTS.name)
    body = ipps_body(psp_key(str(uuid.uuid4()), "payout"))
    response = await post(gw + "/v1/webhooks/ipps", body, ipps_headers(body))
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "unavailable" and response.headers["retry-after"]
    assert await marks(clean) == []


async def test_an_unreachable_redis_is_503_unavailable(
    webhook_settings: WebhookSettings, serve_gateway: ServeGateway
) -> None:
    settings = webhook_settings(PM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    body = qp_body(psp_key(str(uuid.uuid4()), "collect"))
    before = counted("qp", "unavailable")
    async with serve_gateway(settings) as url:
        response = await post(url + "/v1/webhooks/qp", body, qp_headers(body))
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "unavailable"
    assert response.headers["retry-after"] == "1"
    assert counted("qp", "unavailable") == before + 1
