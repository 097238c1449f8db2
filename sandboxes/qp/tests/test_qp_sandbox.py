"""The QP sandbox: its `qr.nspk.ru` links and crc, and its API over HTTP (in process and as a process)."""

from __future__ import annotations

import asyncio
import contextlib
import time
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

from pm_sandbox_qp import callbacks, faults, settings
from pm_sandbox_qp.app import create_app
from pm_sandbox_qp.settings import Settings
from pm_shared import fleet
from pm_shared.psp import sbp_links as links
from pm_tools import processes
from pm_tools.testing.asgi import serve as serving

SECRET = "test-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}

# Real links (Q1-Q5, crc-valid) and two that must fail (Q6 edited sum, Q7 placeholder).
Q1 = "https://qr.nspk.ru/AD100004BAL7227F9BNP6KNE007J9B3K?type=02&bank=100000000007&sum=1&cur=RUB&crc=AB75"
Q2 = "https://qr.nspk.ru/AS100001ORTF4GAF80KPJ53K186D9A3G?type=01&bank=100000000007&crc=0C8A"
Q3 = "https://qr.nspk.ru/AD10003B4EACO3648G89G25T6DLRGBLB?type=02&bank=100000000111&sum=100&cur=RUB&crc=1A23"
Q4 = "https://qr.nspk.ru/AD1P0060EL96K9C18LLRIJ39S23RO4HP?type=02&bank=100000000004&sum=1000&cur=RUB&crc=92EA"
Q5 = (
    "https://qr.nspk.ru/BD100079OJJHGJAG83NRAERR9428F7H2?type=02&bank=100000000014&sum=97500&cur=RUB&crc=DB3B"
)
Q6 = Q5.replace("sum=97500", "sum=222200")
Q7 = Q1.replace("crc=AB75", "crc=C08B")


# --- links ----------------------------------------------------------------------------------------


def test_crc_is_ccitt_false() -> None:
    assert links.crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogue check value


@pytest.mark.parametrize("link", [Q1, Q3, Q4, Q5])
def test_real_dynamic_links_parse_and_rebuild_byte_for_byte(link: str) -> None:
    parsed = links.parse(link)
    assert parsed.type == "02" and parsed.currency == "RUB" and parsed.amount is not None
    assert links.build(parsed.qr_id, parsed.bank, parsed.amount) == link


def test_real_static_link_parses_and_rebuilds() -> None:
    parsed = links.parse(Q2)
    assert (parsed.type, parsed.amount, parsed.currency, parsed.crc) == ("01", None, None, "0C8A")
    assert links.build(parsed.qr_id, parsed.bank) == Q2


@pytest.mark.parametrize("link", [Q6, Q7])
def test_a_link_whose_crc_does_not_match_is_refused(link: str) -> None:
    with pytest.raises(links.LinkError, match="crc mismatch"):
        links.parse(link)


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("https://qr.nspk.ru/AD1?type=02&bank=100000000111&sum=1&cur=RUB", "no 4-hex-digit crc"),
        (links.build("A" * 32, "100000000111", 5).replace("qr.nspk.ru", "qr.evil.ru"), "crc mismatch"),
        (links.build("A" * 32, "100000000111", 5).replace("type=02", "type=03"), "crc mismatch"),
    ],
)
def test_malformed_links_are_refused(link: str, message: str) -> None:
    with pytest.raises(links.LinkError, match=message):
        links.parse(link)


def test_a_wrong_host_with_a_valid_crc_is_refused() -> None:
    base = "https://qr.evil.ru/" + "A" * 32 + "?type=02&bank=100000000111&sum=5&cur=RUB"
    with pytest.raises(links.LinkError, match="not a qr.nspk.ru link"):
        links.parse(f"{base}&crc={links.crc_of(base)}")


def test_new_qr_ids_have_the_nspk_shape() -> None:
    qr_id = links.new_qr_id()
    assert qr_id.startswith("AD") and links.QR_ID.match(qr_id)
    assert links.new_qr_id(dynamic=False).startswith("AS")


def test_build_refuses_a_bad_qr_id_or_amount() -> None:
    with pytest.raises(links.LinkError):
        links.build("short", "100000000111", 1)
    with pytest.raises(links.LinkError):
        links.build("A" * 32, "100000000111", 0)


# --- faults and signatures ------------------------------------------------------------------------


def test_fault_specs_parse_with_defaults_and_arguments() -> None:
    got = faults.from_request("5xx=502, slow,stuck=3", "top-up sandbox-fault=expire", slow_ms=7, hang_ms=9)
    assert (got.status_5xx, got.slow_ms, got.stuck_polls, got.expire) == (502, 7, 3, True)
    assert faults.parse("timeout", slow_ms=1, hang_ms=9).hang_ms == 9


@pytest.mark.parametrize("spec", ["explode", "stuck", "5xx=200", "slow=abc", "expire=1"])
def test_unknown_fault_specs_are_refused(spec: str) -> None:
    with pytest.raises(faults.UnknownFault):
        faults.parse(spec, slow_ms=1, hang_ms=1)


def test_callback_signature_verifies_only_the_signed_body_while_fresh() -> None:
    ts = str(int(time.time()))
    sig = callbacks.sign(SECRET, ts, b'{"a":1}')
    assert callbacks.verify(SECRET, ts, b'{"a":1}', sig)
    assert not callbacks.verify(SECRET, ts, b'{"a":2}', sig)
    assert not callbacks.verify("other", ts, b'{"a":1}', sig)
    old = str(int(time.time()) - 3600)
    assert not callbacks.verify(SECRET, old, b'{"a":1}', callbacks.sign(SECRET, old, b'{"a":1}'))


def test_settings_come_from_qp_sandbox_variables() -> None:
    loaded = settings.load({"PM_QP_SANDBOX_PORT": "9300", "PM_QP_SANDBOX_AUTO_PAY": "accept"})
    assert (loaded.port, loaded.auto_pay, loaded.host) == (9300, "accept", "127.0.0.1")
    assert settings.load({}).port == 9202


# --- the sandbox over HTTP ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded


@dataclass
class Receiver:
    """A tiny callback endpoint; answers 500 to the first `fail_first` deliveries."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    seen: int = 0

    async def endpoint(self, request: Request) -> Response:
        self.seen += 1
        if self.seen <= self.fail_first:
            return Response(status_code=500)
        self.received.append(Received(dict(request.headers), await request.body()))
        return Response(status_code=200)

    def statuses(self, qr_id: str) -> list[str]:
        return [r.json()["status"] for r in self.received if r.json()["qr_id"] == qr_id]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@dataclass
class Sandbox:
    url: str
    http: httpx.AsyncClient
    receiver: Receiver
    clock: Clock

    async def register(
        self, order: str, amount: int = 150_00, *, fault: str | None = None, **extra: object
    ) -> httpx.Response:
        body = {"order": order, "amount": amount, "currency": "RUB", "purpose": "top-up", **extra}
        headers = {faults.HEADER: fault} if fault else {}
        return await self.http.post(f"{self.url}/v1/qrs", json=body, headers=headers)

    async def act(self, qr_id: str, action: str, fault: str | None = None) -> httpx.Response:
        headers = {faults.HEADER: fault} if fault else {}
        return await self.http.post(f"{self.url}/v1/sandbox/qrs/{qr_id}/{action}", headers=headers)

    async def status(self, qr_id: str) -> str:
        response = await self.http.get(f"{self.url}/v1/qrs/{qr_id}")
        assert response.status_code == 200, response.text
        status: str = response.json()["status"]
        return status


def sandbox_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret": SECRET,
        "slow_ms": 300,
        "hang_ms": 1_000,
        "callback_retry_ms": 50,
        "sweep_ms": 20,
        **overrides,
    }
    return msgspec.convert(values, Settings)


@contextlib.asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Sandbox]:
    receiver = Receiver()
    clock = Clock()
    async with serving(Starlette(routes=[Route("/cb", receiver.endpoint, methods=["POST"])])) as rurl:
        receiver.url = f"{rurl}/cb"
        app = create_app(sandbox_settings(**{"callback_url": receiver.url, **overrides}), clock=clock)
        async with serving(app) as url, httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            yield Sandbox(url, http, receiver, clock)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running() as box:
        yield box


async def test_healthz_answers_without_auth(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient() as bare:
        response = await bare.get(f"{sandbox.url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_register_returns_a_new_dynamic_qr_with_a_valid_link(sandbox: Sandbox) -> None:
    response = await sandbox.register("order-1", 150_00)
    assert response.status_code == 201
    qr = response.json()
    assert qr["status"] == "NEW" and qr["amount"] == 150_00 and qr["order"] == "order-1"
    link = links.parse(qr["payload"])
    assert (link.qr_id, link.type, link.amount, link.currency) == (qr["qr_id"], "02", 150_00, "RUB")
    assert link.bank == "100000000111" and qr["qr_id"].startswith("AD")
    assert qr["expires_at"] > qr["created_at"] and qr["accepted_at"] is None


async def test_pay_ends_accepted_with_signed_callbacks_in_order(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-pay")).json()
    paid = await sandbox.act(qr["qr_id"], "pay")
    assert paid.status_code == 200 and paid.json()["status"] == "ACCEPTED"
    view = (await sandbox.http.get(f"{sandbox.url}/v1/qrs/{qr['qr_id']}")).json()
    assert view["status"] == "ACCEPTED" and view["transaction_id"]
    assert view["in_progress_at"] <= view["accepted_at"]
    await eventually(lambda: len(sandbox.receiver.received) == 2)
    assert sandbox.receiver.statuses(qr["qr_id"]) == ["IN_PROGRESS", "ACCEPTED"]
    for delivery in sandbox.receiver.received:
        ts = delivery.headers[callbacks.TIMESTAMP_HEADER.lower()]
        sig = delivery.headers[callbacks.SIGNATURE_HEADER.lower()]
        assert callbacks.verify(SECRET, ts, delivery.body, sig)
    final = sandbox.receiver.received[-1].json()
    assert final["order"] == "order-pay" and final["amount"] == 150_00 and final["seq"] == 2
    assert final["transaction_id"] == view["transaction_id"]


async def test_registering_the_same_order_again_returns_the_same_qr(sandbox: Sandbox) -> None:
    first = await sandbox.register("order-twice")
    again = await sandbox.register("order-twice")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    found = await sandbox.http.get(f"{sandbox.url}/v1/qrs", params={"order": "order-twice"})
    assert found.json()["qr_id"] == first.json()["qr_id"]


async def test_the_same_order_with_another_body_is_a_conflict(sandbox: Sandbox) -> None:
    await sandbox.register("order-c", 100)
    response = await sandbox.register("order-c", 200)
    assert response.status_code == 409 and response.json()["code"] == "ORDER_CONFLICT"


async def test_reject_ends_rejected(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-rej")).json()
    assert (await sandbox.act(qr["qr_id"], "reject")).json()["status"] == "REJECTED"
    assert await sandbox.status(qr["qr_id"]) == "REJECTED"
    await eventually(lambda: sandbox.receiver.statuses(qr["qr_id"]) == ["IN_PROGRESS", "REJECTED"])
    again = await sandbox.act(qr["qr_id"], "pay")
    assert again.status_code == 409 and again.json()["code"] == "QR_NOT_PAYABLE"


async def test_a_qr_expires_after_its_ttl_and_cannot_be_paid(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-ttl", ttl_s=60)).json()
    sandbox.clock.now += 59
    assert await sandbox.status(qr["qr_id"]) == "NEW"
    sandbox.clock.now += 2
    await eventually(lambda: sandbox.receiver.statuses(qr["qr_id"]) == ["EXPIRED"])
    view = (await sandbox.http.get(f"{sandbox.url}/v1/qrs/{qr['qr_id']}")).json()
    assert view["status"] == "EXPIRED" and view["expired_at"] is not None
    paid = await sandbox.act(qr["qr_id"], "pay")
    assert paid.status_code == 409 and "EXPIRED" in paid.json()["detail"]


async def test_the_default_ttl_applies_without_one(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-default-ttl")).json()
    sandbox.clock.now += 72 * 3600 - 1
    assert await sandbox.status(qr["qr_id"]) == "NEW"
    sandbox.clock.now += 1
    assert await sandbox.status(qr["qr_id"]) == "EXPIRED"


async def test_test_control_expire_ends_a_new_qr(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-exp-now")).json()
    assert (await sandbox.act(qr["qr_id"], "expire")).json()["status"] == "EXPIRED"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"amount": 100}, "order"),
        ({"order": "o-1"}, "amount"),
        ({"order": "o-1", "amount": 0}, "amount"),
        ({"order": "bad order!", "amount": 100}, "order"),
        ({"order": "o-1", "amount": 100, "currency": "USD"}, "currency"),
        ({"order": "o-1", "amount": "100"}, "amount"),
        ({"order": "o-1", "amount": 100, "surprise": 1}, "surprise"),
    ],
)
async def test_bad_registrations_are_problems_with_a_code(
    sandbox: Sandbox, body: dict[str, object], fragment: str
) -> None:
    response = await sandbox.http.post(f"{sandbox.url}/v1/qrs", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "INVALID_REQUEST" and fragment in problem["detail"]


async def test_other_bad_requests_are_problems_with_a_code(sandbox: Sandbox) -> None:
    cases = [
        (await sandbox.http.post(f"{sandbox.url}/v1/qrs", content=b"{not json"), 422, "INVALID_REQUEST"),
        (await sandbox.http.get(f"{sandbox.url}/v1/qrs/" + "A" * 32), 404, "QR_NOT_FOUND"),
        (await sandbox.http.get(f"{sandbox.url}/v1/qrs"), 422, "INVALID_REQUEST"),
        (await sandbox.act("A" * 32, "pay"), 404, "QR_NOT_FOUND"),
        (await sandbox.register("o-f", fault="explode"), 400, "UNKNOWN_FAULT"),
        (await sandbox.http.get(f"{sandbox.url}/nowhere"), 404, "NOT_FOUND"),
        (await sandbox.http.delete(f"{sandbox.url}/v1/qrs"), 405, "METHOD_NOT_ALLOWED"),
    ]
    async with httpx.AsyncClient() as bare:
        cases.append((await bare.post(f"{sandbox.url}/v1/qrs", json={}), 401, "UNAUTHORIZED"))
        wrong = {"Authorization": "Bearer nope"}
        cases.append((await bare.get(f"{sandbox.url}/v1/qrs/x", headers=wrong), 401, "UNAUTHORIZED"))
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text


# --- faults ---------------------------------------------------------------------------------------


async def lookup(sandbox: Sandbox, order: str) -> httpx.Response:
    return await sandbox.http.get(f"{sandbox.url}/v1/qrs", params={"order": order})


async def test_fault_reject_registration_stores_nothing(sandbox: Sandbox) -> None:
    response = await sandbox.register("order-f1", fault="reject-registration")
    assert response.status_code == 422 and response.json()["code"] == "REGISTRATION_REJECTED"
    assert (await lookup(sandbox, "order-f1")).status_code == 404


async def test_fault_5xx_fails_before_anything_is_done(sandbox: Sandbox) -> None:
    response = await sandbox.register("order-f2", fault="5xx")
    assert response.status_code == 503 and response.json()["code"] == "SANDBOX_FAULT"
    assert (await lookup(sandbox, "order-f2")).status_code == 404
    assert (await sandbox.register("order-f2b", fault="5xx=502")).status_code == 502


async def test_fault_5xx_after_commit_registers_anyway(sandbox: Sandbox) -> None:
    response = await sandbox.register("order-f3", fault="5xx-after-commit")
    assert response.status_code == 500
    found = await lookup(sandbox, "order-f3")
    assert found.status_code == 200 and found.json()["status"] == "NEW"
    assert (await sandbox.register("order-f3")).json()["qr_id"] == found.json()["qr_id"]


async def test_fault_slow_delays_the_answer(sandbox: Sandbox) -> None:
    started = time.monotonic()
    response = await sandbox.register("order-f4", fault="slow")
    assert response.status_code == 201 and time.monotonic() - started >= 0.3


async def test_fault_timeout_commits_then_outlasts_the_client(sandbox: Sandbox) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await sandbox.http.post(
            f"{sandbox.url}/v1/qrs",
            json={"order": "order-f5", "amount": 100},
            headers={faults.HEADER: "timeout=800"},
            timeout=0.2,
        )
    found = await lookup(sandbox, "order-f5")
    assert found.status_code == 200 and found.json()["status"] == "NEW"


async def test_fault_timeout_on_pay_still_pays(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f5b")).json()
    with pytest.raises(httpx.ReadTimeout):
        await sandbox.http.post(
            f"{sandbox.url}/v1/sandbox/qrs/{qr['qr_id']}/pay",
            headers={faults.HEADER: "timeout=800"},
            timeout=0.2,
        )
    assert await sandbox.status(qr["qr_id"]) == "ACCEPTED"


async def test_fault_duplicate_callbacks_repeat_each_event(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f6", fault="duplicate-callbacks")).json()
    await sandbox.act(qr["qr_id"], "pay")
    await eventually(lambda: len(sandbox.receiver.statuses(qr["qr_id"])) == 4)
    events = [r.json()["event_id"] for r in sandbox.receiver.received]
    assert sandbox.receiver.statuses(qr["qr_id"]) == ["IN_PROGRESS", "IN_PROGRESS", "ACCEPTED", "ACCEPTED"]
    assert len(set(events)) == 2


async def test_fault_out_of_order_callbacks_send_the_final_one_first(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f7")).json()
    await sandbox.act(qr["qr_id"], "pay", fault="out-of-order-callbacks")
    await eventually(lambda: len(sandbox.receiver.statuses(qr["qr_id"])) == 2)
    assert sandbox.receiver.statuses(qr["qr_id"]) == ["ACCEPTED", "IN_PROGRESS"]
    assert [r.json()["seq"] for r in sandbox.receiver.received] == [2, 1]


async def test_fault_stuck_keeps_in_progress_for_n_polls_then_accepts(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f8", fault="stuck=2")).json()
    assert (await sandbox.act(qr["qr_id"], "pay")).json()["status"] == "IN_PROGRESS"
    assert [await sandbox.status(qr["qr_id"]) for _ in range(4)] == [
        "IN_PROGRESS",
        "IN_PROGRESS",
        "ACCEPTED",
        "ACCEPTED",
    ]
    await eventually(lambda: sandbox.receiver.statuses(qr["qr_id"]) == ["IN_PROGRESS", "ACCEPTED"])


async def test_fault_stuck_with_out_of_order_holds_in_progress_until_the_end(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f8b", fault="stuck=1,out-of-order-callbacks")).json()
    await sandbox.act(qr["qr_id"], "reject")
    assert await sandbox.status(qr["qr_id"]) == "IN_PROGRESS"
    await asyncio.sleep(0.1)
    assert sandbox.receiver.statuses(qr["qr_id"]) == []
    assert await sandbox.status(qr["qr_id"]) == "REJECTED"
    await eventually(lambda: sandbox.receiver.statuses(qr["qr_id"]) == ["REJECTED", "IN_PROGRESS"])


async def test_a_qr_being_paid_does_not_expire(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f8c", ttl_s=10, fault="stuck=1")).json()
    await sandbox.act(qr["qr_id"], "pay")
    sandbox.clock.now += 100
    assert [await sandbox.status(qr["qr_id"]) for _ in range(2)] == ["IN_PROGRESS", "ACCEPTED"]


async def test_fault_expire_gives_a_qr_born_expired(sandbox: Sandbox) -> None:
    response = await sandbox.register("order-f9", fault="expire")
    assert response.status_code == 201 and response.json()["status"] == "EXPIRED"
    await eventually(lambda: sandbox.receiver.statuses(response.json()["qr_id"]) == ["EXPIRED"])


async def test_faults_can_ride_in_the_purpose(sandbox: Sandbox) -> None:
    response = await sandbox.register("order-f10", purpose="top-up sandbox-fault=reject-registration")
    assert response.json()["code"] == "REGISTRATION_REJECTED"
    qr = (await sandbox.register("order-f11", purpose="top-up sandbox-fault=stuck=1")).json()
    await sandbox.act(qr["qr_id"], "pay")
    assert [await sandbox.status(qr["qr_id"]) for _ in range(2)] == ["IN_PROGRESS", "ACCEPTED"]


async def test_faults_apply_to_status_reads(sandbox: Sandbox) -> None:
    qr = (await sandbox.register("order-f12")).json()
    response = await sandbox.http.get(f"{sandbox.url}/v1/qrs/{qr['qr_id']}", headers={faults.HEADER: "5xx"})
    assert response.status_code == 503


async def test_an_unanswered_callback_is_retried_and_recorded(sandbox: Sandbox) -> None:
    sandbox.receiver.fail_first = 1
    qr = (await sandbox.register("order-retry", fault="expire")).json()
    await eventually(lambda: sandbox.receiver.statuses(qr["qr_id"]) == ["EXPIRED"])
    listed = await sandbox.http.get(f"{sandbox.url}/v1/sandbox/callbacks", params={"qr_id": qr["qr_id"]})
    attempts = [(d["attempt"], d["http_status"]) for d in listed.json()]
    assert attempts == [(1, 500), (2, 200)]


async def test_a_receiver_that_is_down_gets_every_attempt_recorded() -> None:
    async with running(
        callback_url=f"http://127.0.0.1:{processes.free_port()}/cb", callback_attempts=2
    ) as box:
        qr = (await box.register("order-down", fault="expire")).json()
        url = f"{box.url}/v1/sandbox/callbacks"

        async def attempts() -> list[tuple[int, bool]]:
            listed = (await box.http.get(url)).json()
            return [(d["attempt"], d["error"] is not None) for d in listed]

        deadline = time.monotonic() + 5
        while await attempts() != [(1, True), (2, True)]:
            assert time.monotonic() < deadline, await attempts()
            await asyncio.sleep(0.05)
        assert (await box.status(qr["qr_id"])) == "EXPIRED"


async def test_auto_pay_makes_the_payer_pay_by_itself() -> None:
    async with running(auto_pay="accept", auto_pay_delay_ms=10) as box:
        qr = (await box.register("order-auto")).json()
        await eventually(lambda: box.receiver.statuses(qr["qr_id"]) == ["IN_PROGRESS", "ACCEPTED"])
        assert await box.status(qr["qr_id"]) == "ACCEPTED"


async def test_no_callback_url_means_no_callbacks() -> None:
    async with running(callback_url="") as box:
        qr = (await box.register("order-quiet")).json()
        await box.act(qr["qr_id"], "pay")
        listed = await box.http.get(f"{box.url}/v1/sandbox/callbacks")
        assert listed.json() == [] and box.receiver.received == []


# --- as a real process ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_sandbox_runs_as_a_process() -> None:
    receiver = Receiver()
    async with serving(Starlette(routes=[Route("/cb", receiver.endpoint, methods=["POST"])])) as rurl:
        port = processes.free_port()
        variables = {"PM_QP_SANDBOX_SECRET": SECRET, "PM_QP_SANDBOX_CALLBACK_URL": f"{rurl}/cb"}
        env = processes.environment(fleet.QP_SANDBOX, variables, port=port)
        proc = await processes.spawn_async(fleet.QP_SANDBOX, env, stderr=asyncio.subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
                deadline = time.monotonic() + 15
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/healthz")).status_code == 200:
                            break
                    assert proc.returncode is None, "sandbox exited"
                    assert time.monotonic() < deadline, "sandbox did not become healthy"
                    await asyncio.sleep(0.1)
                qr = (await http.post(f"{url}/v1/qrs", json={"order": "p-1", "amount": 500})).json()
                assert links.parse(qr["payload"]).amount == 500
                await http.post(f"{url}/v1/sandbox/qrs/{qr['qr_id']}/pay")
                assert (await http.get(f"{url}/v1/qrs/{qr['qr_id']}")).json()["status"] == "ACCEPTED"
                await eventually(lambda: receiver.statuses(qr["qr_id"]) == ["IN_PROGRESS", "ACCEPTED"])
                last = receiver.received[-1]
                ts = last.headers[callbacks.TIMESTAMP_HEADER.lower()]
                signature = last.headers[callbacks.SIGNATURE_HEADER.lower()]
                assert callbacks.verify(SECRET, ts, last.body, signature)
        finally:
            proc.terminate()
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
        # A clean stop, not uvicorn's re-raised SIGTERM.
        assert proc.returncode == 0, stderr.decode()
        assert "Application shutdown complete" in stderr.decode()
