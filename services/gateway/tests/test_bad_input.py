"""Hostile input, over real connections: each class of request that once reached PostgreSQL or Python
unchecked (a 500) is now a 4xx problem with a stable code, and nothing is written anywhere."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_client import signing
from pm_shared import db
from pm_tools.testing.gateway import Gateway

IPPS_SECRET = "ipps-test-secret"
QP_SECRET = "qp-test-secret"
COUNTED = ("pm.intent", "pm.service_key", "pm.fee_rule", "pm.limit_rule", "pm.outbox", "pm.tb_account_map")


def p2p(**changes: Any) -> dict[str, Any]:
    return {
        "type": "P2P",
        "amount": 100,
        "currency": "THB",
        "from": {"kind": "user", "id": "alice"},
        "to": {"kind": "user", "id": "bob"},
        **changes,
    }


async def counts(database_url: str) -> dict[str, int]:
    conn = await db.connect(database_url)
    try:
        return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in COUNTED}
    finally:
        await conn.close()


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    assert body["requestId"] and response.headers["x-request-id"] == body["requestId"]


async def test_nul_characters_are_refused_before_postgresql(gateway: Gateway, database_url: str) -> None:
    before = await counts(database_url)
    bodies = {
        "comment": p2p(comment="a\x00b"),
        "fromName": p2p(fromName="\x00"),
        "toName": p2p(toName="bob\x00"),
        "metadata key": p2p(metadata={"k\x00": "v"}),
        "metadata value": p2p(metadata={"k": "v\x00"}),
        "ref1": p2p(
            type="PROMPTPAY_WITHDRAWAL",
            to={"kind": "promptpay", "proxyType": "BILLER", "proxyValue": "0105536", "ref1": "a\x00"},
        ),
    }
    for name, body in bodies.items():
        response = await gateway.send("POST", "/v1/intents", body, headers={"Idempotency-Key": name})
        refused(response, 422, "validation_failed")
    key = await gateway.send(
        "POST", "/v1/admin/keys", {"operations": ["P2P"], "description": "x\x00"}, key=gateway.admin
    )
    refused(key, 422, "validation_failed")
    rule = {"ruleId": "nul", "operationType": "P2P", "amount": "1", "timing": "PRE", "maxFee": 10}
    for changes in ({"description": "\x00"}, {"amount": 'size("\x00")'}):
        response = await gateway.send("POST", "/v1/admin/fee-rules", {**rule, **changes}, key=gateway.admin)
        refused(response, 422, "validation_failed")
    for method, path in (
        ("GET", "/v1/wallets/a%00b"),
        ("GET", "/v1/wallets/a%00b/history"),
        ("POST", "/v1/admin/keys/pk_%00/rotate"),
        ("POST", "/v1/admin/keys/pk_%00/deactivate"),
        ("POST", "/v1/admin/fee-rules/r%00/retire"),
        ("POST", "/v1/admin/limit-rules/r%00/retire"),
    ):
        refused(await gateway.send(method, path, key=gateway.admin), 400, "invalid_parameter")
    assert await counts(database_url) == before


async def test_ids_have_one_pattern(gateway: Gateway, database_url: str) -> None:
    before = await counts(database_url)
    for n, owner in enumerate(("..", ".", "-a", "a" * 65, "é", "a/b", "a b")):
        body = p2p(to={"kind": "user", "id": owner})
        response = await gateway.send("POST", "/v1/intents", body, headers={"Idempotency-Key": f"id-{n}"})
        refused(response, 422, "validation_failed")
        wallet = {"ownerKind": "user", "ownerId": owner, "currency": "THB"}
        refused(await gateway.send("POST", "/v1/wallets", wallet), 422, "validation_failed")
    refused(await gateway.send("GET", "/v1/wallets/%2E%2E"), 400, "invalid_parameter")
    assert await counts(database_url) == before


@pytest.mark.parametrize("path", ["/v1/intents", "/v1/wallets", "/v1/admin/keys"])
async def test_invalid_utf8_is_malformed_json(gateway: Gateway, database_url: str, path: str) -> None:
    before = await counts(database_url)
    body = b'{"type":"P2P","comment":"\xff\xfe"}'
    response = await gateway.send("POST", path, body, key=gateway.admin, headers={"Idempotency-Key": "u"})
    refused(response, 400, "malformed_json")
    assert await counts(database_url) == before


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_cursors_and_limits_outside_their_range_are_400(gateway: Gateway) -> None:
    edge = "0001-01-01T00:00:00+14:00"
    cases = {
        f"/v1/intents?cursor={_cursor(f'{edge}|{uuid.uuid4()}')}": "cursor_invalid",
        f"/v1/intents?cursor={_cursor('2026-01-01T00:00:00|' + str(uuid.uuid4()))}": "cursor_invalid",
        f"/v1/wallets/alice/history?cursor={_cursor(f'2026-01-01T00:00:00+00:00|{2**70}')}": "cursor_invalid",
        f"/v1/wallets/alice/history?cursor={_cursor(f'{edge}|1')}": "cursor_invalid",
        "/v1/intents?cursor=%00": "cursor_invalid",
        "/v1/intents?limit=%C2%B2": "limit_invalid",  # ²: str.isdigit() says yes, int() says no
        "/v1/intents?limit=%D9%A3": "limit_invalid",  # ٣: int() reads it as 3
        "/v1/intents?limit=0": "limit_invalid",
        "/v1/intents?limit=201": "limit_invalid",
        "/v1/intents?limit=1&limit=2": "limit_invalid",
        "/v1/wallets/alice/history?limit=%C2%B2": "limit_invalid",
    }
    for path, code in cases.items():
        refused(await gateway.send("GET", path), 400, code)
    assert (await gateway.send("GET", "/v1/intents?limit=3")).status_code == 200


async def test_fee_rule_times_postgresql_cannot_hold_are_422(gateway: Gateway, database_url: str) -> None:
    before = await counts(database_url)
    rule = {"ruleId": "far", "operationType": "P2P", "amount": "1", "timing": "PRE", "maxFee": 10}
    for changes in (
        {"activeFrom": "9999-12-31T23:59:59-14:00"},
        {"activeFrom": "0001-01-01T00:00:00+14:00"},
        {"activeFrom": "2030-01-01T00:00:00Z", "activeUntil": "2029-01-01T00:00:00Z"},
    ):
        response = await gateway.send("POST", "/v1/admin/fee-rules", {**rule, **changes}, key=gateway.admin)
        refused(response, 422, "validation_failed")
    assert await counts(database_url) == before


async def test_a_body_not_sent_as_json_is_415(gateway: Gateway, database_url: str) -> None:
    before = await counts(database_url)
    body = msgspec.json.encode(p2p())
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml", None):
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if content_type is None:  # the test kit adds application/json; this request must carry none
            response = await _without_content_type(gateway, body, headers)
        else:
            response = await gateway.send("POST", "/v1/intents", body, headers=headers)
        refused(response, 415, "unsupported_media_type")
    charset = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json; charset=latin-1"}
    refused(await gateway.send("POST", "/v1/intents", body, headers=charset), 415, "unsupported_media_type")
    ok = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "Application/JSON; charset=UTF-8"}
    assert (await gateway.send("POST", "/v1/intents", body, headers=ok)).status_code == 202
    assert (await counts(database_url))["pm.intent"] == before["pm.intent"] + 1


async def _without_content_type(gateway: Gateway, body: bytes, headers: dict[str, str]) -> httpx.Response:
    sent = signing.headers(gateway.user.key_id, gateway.user.secret, "POST", "/v1/intents", body)
    request = gateway.http.build_request("POST", gateway.url + "/v1/intents", content=body, headers=sent)
    request.headers.update(headers)
    request.headers.pop("content-type", None)
    return await gateway.http.send(request)


async def test_a_body_on_an_operation_without_one_is_400(gateway: Gateway) -> None:
    refused(await gateway.send("GET", "/v1/intents", b"{}"), 400, "body_unexpected")


async def test_405_names_every_allowed_method(gateway: Gateway) -> None:
    for method, path, allow in (
        ("DELETE", "/v1/intents", "GET, POST"),
        ("PUT", "/v1/intents/00000000-0000-0000-0000-000000000000", "GET"),
        ("GET", "/v1/fees/dry-run", "POST"),
    ):
        response = await gateway.http.request(method, gateway.url + path)
        refused(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allow


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\nX-Evil: 1\r\n\r\n",  # a bare LF
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",  # obsolete line folding
        b"GET /healthz HTTP/1.1\nHost: x\n\n",  # LF line ends throughout
    ],
    ids=["bare-lf", "obs-fold", "lf-only"],
)
async def test_header_smuggling_shapes_are_refused_on_the_wire(gateway: Gateway, head: bytes) -> None:
    answer = await asyncio.to_thread(_raw, gateway.url, head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    ok = await asyncio.to_thread(
        _raw, gateway.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]


# --- the PSPs' callbacks, with valid signatures -------------------------------------------------------


def _ipps(body: bytes) -> dict[str, str]:
    t = str(int(time.time()))
    mac = hmac.new(IPPS_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-IPPS-Signature": f"t={t},v1={mac}"}


def _qp(body: bytes) -> dict[str, str]:
    t = str(int(time.time()))
    mac = hmac.new(QP_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-QP-Timestamp": t, "X-QP-Signature": mac}


async def _post(url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, content=body, headers=headers)


async def _nothing_passed_on(redis: Redis) -> None:
    assert [k async for k in redis.scan_iter(match="pm:webhooks:seen:*")] == []
    for key in [k async for k in redis.scan_iter(match="{pm:psp:*")]:
        assert await redis.xlen(key) == 0


async def test_signed_callbacks_pm_cannot_act_on_are_refused(gw: str, clean: Redis) -> None:
    transfer = {"transfer_id": "trf\x001", "idempotency_key": "k", "status": "SUCCEEDED"}
    nul = msgspec.json.encode({"event": "transfer.succeeded", "sequence": 1, "transfer": transfer})
    nested = b'{"event":"e","sequence":1,"x":' + b"[" * 3000 + b"]" * 3000 + b',"transfer":{}}'
    for body, status, code in (
        (nul, 422, "validation_failed"),
        (b'{"event":"\xff","sequence":1,"transfer":{}}', 400, "malformed_json"),
        (nested, 400, "malformed_json"),
    ):
        refused(await _post(gw + "/v1/webhooks/ipps", body, _ipps(body)), status, code)
    qp = msgspec.json.encode(
        {"event_id": "e\x00", "seq": 1, "qr_id": "AD1", "order": "o", "status": "ACCEPTED"}
    )
    refused(await _post(gw + "/v1/webhooks/qp", qp, _qp(qp)), 422, "validation_failed")
    bad_utf8 = b'{"event_id":"\xc3\x28","seq":1,"qr_id":"AD1","order":"o","status":"ACCEPTED"}'
    refused(await _post(gw + "/v1/webhooks/qp", bad_utf8, _qp(bad_utf8)), 400, "malformed_json")
    form = b"event_id=e&seq=1"
    refused(
        await _post(
            gw + "/v1/webhooks/qp", form, {**_qp(form), "Content-Type": "application/x-www-form-urlencoded"}
        ),
        415,
        "unsupported_media_type",
    )
    await _nothing_passed_on(clean)
