"""The IPPS sandbox's refunds over real HTTP (uvicorn in this loop): a settled transfer sent back by the
receiving bank, its signed `transfer.returned` callback, the refund status API, and the sim controls
that deliver a refund's callback again, late or as a new event."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pm_sandbox_ipps.app import create_app
from pm_sandbox_ipps.settings import Settings
from pm_shared.psp import ipps_signing as signing
from pm_tools.testing.asgi import serve

CALLBACK_SECRET = "refund-callback-secret"
AUTH_SECRET = "refund-auth-secret"


@dataclass
class Receiver:
    """A callback endpoint recording what arrives (headers, body)."""

    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    def returned(self) -> list[dict[str, Any]]:
        bodies = [msgspec.json.decode(body) for _, body in self.got]
        return [b for b in bodies if b["event"] == "transfer.returned"]


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@dataclass
class Ipps:
    url: str
    http: httpx.AsyncClient
    receiver: Receiver

    async def signed_get(self, path: str, secret: str = AUTH_SECRET) -> httpx.Response:
        t = int(time.time())
        header = signing.sign(secret, t, signing.request_message(t, "GET", path, b""))
        return await self.http.get(self.url + path, headers={signing.HEADER: header})

    async def pay(self, amount: int = 10_000, fault: str = "") -> dict[str, Any]:
        """A transfer made under a fresh key (SUCCESS unless `fault` says otherwise)."""
        headers = {signing.HEADER: ""}
        inquiry = await self._signed_post(
            "/v1/inquiry", {"amount": amount, "proxy_type": "MSISDN", "proxy_value": "0812345678"}, headers
        )
        key = str(uuid.uuid4())
        confirm_headers = {"Idempotency-Key": key, **({"X-Sandbox-Fault": fault} if fault else {})}
        body = {"inquiry_id": inquiry.json()["inquiry_id"], "amount": amount}
        confirmed = await self._signed_post("/v1/transfers", body, confirm_headers)
        assert confirmed.status_code == 201, confirmed.text
        made: dict[str, Any] = confirmed.json()
        return made

    async def _signed_post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        content = msgspec.json.encode(body)
        t = int(time.time())
        sent = {
            **headers,
            "Content-Type": "application/json",
            signing.HEADER: signing.sign(AUTH_SECRET, t, signing.request_message(t, "POST", path, content)),
        }
        return await self.http.post(self.url + path, content=content, headers=sent)

    async def send_back(self, transfer_id: str, **body: Any) -> httpx.Response:
        return await self.http.post(f"{self.url}/_sim/transfers/{transfer_id}/return", json=body)

    async def callback(self, refund_id: str, **body: Any) -> httpx.Response:
        return await self.http.post(f"{self.url}/_sim/refunds/{refund_id}/callback", json=body)


@pytest.fixture
async def ipps() -> AsyncIterator[Ipps]:
    receiver = Receiver()
    async with (
        serve(Starlette(routes=[Route("/cb", receiver.endpoint, methods=["POST"])])) as cb_url,
        httpx.AsyncClient(timeout=10) as http,
    ):
        config = Settings(
            callback_url=cb_url + "/cb",
            callback_secret=CALLBACK_SECRET,
            callback_retry_ms=20,
            auth_secret=AUTH_SECRET,
            pending_ms=50,
        )
        async with serve(create_app(config)) as url:
            yield Ipps(url, http, receiver)


async def test_a_settled_transfer_sent_back_is_a_refund_readable_and_called_back_signed(ipps: Ipps) -> None:
    transfer = await ipps.pay(12_000)
    made = await ipps.send_back(transfer["transfer_id"])
    assert made.status_code == 201, made.text
    refund = made.json()
    assert refund["refund_id"].startswith("rfd_") and refund["created_at"].endswith("Z")
    assert (refund["transfer_id"], refund["idempotency_key"]) == (
        transfer["transfer_id"],
        transfer["idempotency_key"],
    )
    assert (refund["amount"], refund["currency"], refund["status"]) == (12_000, "THB", "COMPLETED")
    assert made.headers["location"] == f"/v1/refunds/{refund['refund_id']}"

    assert (await ipps.signed_get(f"/v1/refunds/{refund['refund_id']}")).json() == refund
    read_back = (await ipps.signed_get(f"/v1/transfers/{transfer['transfer_id']}")).json()
    assert (read_back["status"], read_back["returned_amount"], read_back["refunds"]) == (
        "SUCCESS",
        12_000,
        [refund],
    )
    ledger = (await ipps.http.get(ipps.url + "/_sim/ledger")).json()
    assert (ledger["paid"], ledger["returned"]) == (12_000, 12_000)

    await until(lambda: len(ipps.receiver.returned()) == 1)
    [(headers, body)] = [(h, b) for h, b in ipps.receiver.got if b"transfer.returned" in b]
    assert signing.verify(
        CALLBACK_SECRET,
        headers[signing.HEADER.lower()],
        lambda t: signing.callback_message(t, body),
        time.time(),
        60,
    )
    callback = msgspec.json.decode(body)
    assert callback["event_id"].startswith("evt_") and callback["sequence"] == 3
    assert callback["refund"] == refund
    assert callback["transfer"]["transfer_id"] == transfer["transfer_id"]


async def test_partial_returns_never_add_up_to_more_than_the_transfer_unless_the_fault_asks(
    ipps: Ipps,
) -> None:
    transfer = await ipps.pay(10_000)
    tid = transfer["transfer_id"]
    assert (await ipps.send_back(tid, amount=4_000)).json()["amount"] == 4_000
    too_much = await ipps.send_back(tid, amount=6_001)
    assert (too_much.status_code, too_much.json()["code"]) == (422, "REFUND_EXCEEDS_TRANSFER")
    rest = await ipps.send_back(tid)  # no amount: all that is left
    assert (rest.status_code, rest.json()["amount"]) == (201, 6_000)
    nothing_left = await ipps.send_back(tid)
    assert (nothing_left.status_code, nothing_left.json()["code"]) == (422, "REFUND_EXCEEDS_TRANSFER")
    excess = await ipps.send_back(tid, amount=500, allow_excess=True)
    assert (excess.status_code, excess.json()["amount"]) == (201, 500)
    read_back = (await ipps.signed_get(f"/v1/transfers/{tid}")).json()
    assert read_back["returned_amount"] == 10_500
    assert [r["amount"] for r in read_back["refunds"]] == [4_000, 6_000, 500]
    assert len({r["refund_id"] for r in read_back["refunds"]}) == 3


async def test_only_a_settled_transfer_can_be_sent_back(ipps: Ipps) -> None:
    failed = await ipps.pay(10_000, fault="insufficient-liquidity")
    pending = await ipps.pay(10_000, fault="unknown=5")
    for transfer in (failed, pending):
        refused = await ipps.send_back(transfer["transfer_id"])
        assert (refused.status_code, refused.json()["code"]) == (409, "TRANSFER_NOT_SETTLED")
    missing = await ipps.send_back("trf_nope")
    assert (missing.status_code, missing.json()["code"]) == (404, "TRANSFER_NOT_FOUND")
    bad = await ipps.send_back((await ipps.pay())["transfer_id"], amount=0)
    assert (bad.status_code, bad.json()["code"]) == (422, "INVALID_REQUEST")
    assert (await ipps.http.get(ipps.url + "/_sim/ledger")).json()["returned"] == 0


async def test_the_refund_status_api_is_signed_and_knows_only_real_refunds(ipps: Ipps) -> None:
    refund = (await ipps.send_back((await ipps.pay())["transfer_id"])).json()
    path = f"/v1/refunds/{refund['refund_id']}"
    unsigned = await ipps.http.get(ipps.url + path)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "INVALID_SIGNATURE")
    wrong = await ipps.signed_get(path, secret="not-it")
    assert wrong.status_code == 401
    unknown = await ipps.signed_get("/v1/refunds/rfd_000")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "REFUND_NOT_FOUND")


async def test_a_held_callback_is_sent_when_asked_again_as_a_new_event_and_late(ipps: Ipps) -> None:
    tid = (await ipps.pay(10_000))["transfer_id"]
    first = (await ipps.send_back(tid, amount=3_000, callback="hold")).json()
    second = (await ipps.send_back(tid, amount=2_000, callback="hold")).json()
    await asyncio.sleep(0.2)
    assert ipps.receiver.returned() == []  # held

    late = await ipps.callback(first["refund_id"], delay_ms=300)
    now = await ipps.callback(second["refund_id"])
    assert late.status_code == now.status_code == 202
    await until(lambda: len(ipps.receiver.returned()) == 2)
    # The second refund's callback arrives before the first's.
    assert [c["refund"]["refund_id"] for c in ipps.receiver.returned()] == [
        second["refund_id"],
        first["refund_id"],
    ]
    assert [c["sequence"] for c in ipps.receiver.returned()] == [4, 3]

    again = (await ipps.callback(first["refund_id"])).json()["event_id"]
    renewed = (await ipps.callback(first["refund_id"], new_event=True)).json()["event_id"]
    await until(lambda: len(ipps.receiver.returned()) == 4)
    events = [
        c["event_id"] for c in ipps.receiver.returned() if c["refund"]["refund_id"] == first["refund_id"]
    ]
    assert events == [late.json()["event_id"], again, renewed]
    assert again == late.json()["event_id"] != renewed  # a redelivery repeats it; a new event does not
    deliveries = (await ipps.http.get(ipps.url + "/_sim/callbacks")).json()
    assert {d["refund_id"] for d in deliveries if d["event"] == "transfer.returned"} == {
        first["refund_id"],
        second["refund_id"],
    }
    unknown = await ipps.callback("rfd_000")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "REFUND_NOT_FOUND")


async def test_an_outage_answers_503_to_the_next_requests_then_ends(ipps: Ipps) -> None:
    refund = (await ipps.send_back((await ipps.pay())["transfer_id"])).json()
    path = f"/v1/refunds/{refund['refund_id']}"
    set_ = await ipps.http.post(ipps.url + "/_sim/outage", json={"requests": 2})
    assert set_.json() == {"requests": 2}
    answers = [await ipps.signed_get(path) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json()["code"] == "SERVER_ERROR" and answers[2].json() == refund
