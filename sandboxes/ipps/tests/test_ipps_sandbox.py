"""The IPPS sandbox over real HTTP: in process under uvicorn, and as `python -m pm_sandbox_ipps`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
from pm_sandbox_ipps.registry import thai_id_valid
from pm_sandbox_ipps.settings import Settings, load
from pm_shared import fleet
from pm_shared.psp import ipps_signing as signing
from pm_shared.settings import SettingsError
from pm_tools import processes
from pm_tools.testing.asgi import serve

CALLBACK_SECRET = "test-callback-secret"
MOBILE = "0812345678"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class Receiver:
    """A callback endpoint: records what arrives; answers `fail_first` 500s before any 200."""

    url: str = ""
    got: list[Received] = field(default_factory=list)
    fail_first: int = 0

    async def endpoint(self, request: Request) -> Response:
        self.got.append(Received(dict(request.headers), await request.body()))
        if self.fail_first:
            self.fail_first -= 1
            return Response(status_code=500)
        return Response(status_code=204)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    async with serve(Starlette(routes=[Route("/cb", got.endpoint, methods=["POST"])])) as url:
        got.url = url + "/cb"
        yield got


@dataclass
class Sandbox:
    url: str
    http: httpx.AsyncClient

    async def inquire(self, amount: int = 10_000, fault: str = "", **target: str) -> httpx.Response:
        body: dict[str, Any] = {
            "amount": amount,
            **(target or {"proxy_type": "MSISDN", "proxy_value": MOBILE}),
        }
        return await self.http.post(self.url + "/v1/inquiry", json=body, headers=_fault(fault))

    async def confirm(
        self, inquiry: dict[str, Any], key: str, fault: str = "", amount: int | None = None
    ) -> httpx.Response:
        body = {"inquiry_id": inquiry["inquiry_id"], "amount": amount or inquiry["amount"]}
        return await self.http.post(
            self.url + "/v1/transfers", json=body, headers={"Idempotency-Key": key, **_fault(fault)}
        )

    async def pay(self, amount: int = 10_000, fault: str = "") -> tuple[str, httpx.Response]:
        """Inquiry then confirm with a fresh key; the key and the confirm's answer."""
        inquiry = (await self.inquire(amount)).json()
        key = str(uuid.uuid4())
        return key, await self.confirm(inquiry, key, fault)

    async def by_key(self, key: str) -> httpx.Response:
        return await self.http.get(self.url + "/v1/transfers", params={"idempotency_key": key})

    async def ledger(self) -> dict[str, int]:
        answer: dict[str, int] = (await self.http.get(self.url + "/_sim/ledger")).json()
        return answer


def _fault(fault: str) -> dict[str, str]:
    return {"X-Sandbox-Fault": fault} if fault else {}


SandboxFactory = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def make_sandbox() -> AsyncIterator[SandboxFactory]:
    """Starts sandboxes with the given settings (callbacks signed with CALLBACK_SECRET)."""
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))

        async def make(clock: Callable[[], float] = time.time, **settings: Any) -> Sandbox:
            config = Settings(callback_secret=CALLBACK_SECRET, callback_retry_ms=20, **settings)
            url = await stack.enter_async_context(serve(create_app(config, clock)))
            return Sandbox(url, http)

        yield make


@pytest.fixture
async def sandbox(make_sandbox: SandboxFactory, receiver: Receiver) -> Sandbox:
    return await make_sandbox(callback_url=receiver.url, pending_ms=50, hang_s=3)


def assert_signed(received: Received) -> None:
    header = received.headers[signing.HEADER.lower()]
    assert signing.verify(
        CALLBACK_SECRET,
        header,
        lambda t: signing.callback_message(t, received.body),
        time.time(),
        max_skew_s=60,
    )
    assert not signing.verify(
        "wrong", header, lambda t: signing.callback_message(t, received.body), time.time(), 60
    )


# --- happy path and idempotency ---


async def test_inquiry_confirm_succeeds_and_a_signed_callback_arrives(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    inquiry = await sandbox.inquire(12_345)
    assert inquiry.status_code == 200
    body = inquiry.json()
    assert body["amount"] == 12_345
    assert body["receiver_name_en"] and body["receiver_name_th"] and body["account"].startswith("xxx-x-x")
    assert body["inquiry_id"].startswith("inq_") and body["expires_at"].endswith("Z")

    key = str(uuid.uuid4())
    confirmed = await sandbox.confirm(body, key)
    assert confirmed.status_code == 201
    transfer = confirmed.json()
    assert transfer["status"] == "SUCCESS" and transfer["idempotency_key"] == key and transfer["trans_ref"]
    assert confirmed.headers["location"] == f"/v1/transfers/{transfer['transfer_id']}"

    by_id = await sandbox.http.get(f"{sandbox.url}/v1/transfers/{transfer['transfer_id']}")
    assert by_id.json() == transfer
    assert (await sandbox.by_key(key)).json() == transfer

    await until(lambda: len(receiver.got) == 1)
    callback = receiver.got[0]
    assert_signed(callback)
    assert callback.json() == {"event": "transfer.succeeded", "sequence": 2, "transfer": transfer}
    assert await sandbox.ledger() == {"paid": 12_345, "returned": 0, "transfers": 1}


async def test_a_biller_target_can_be_paid(sandbox: Sandbox) -> None:
    inquiry = await sandbox.inquire(5_000, biller_id="010753600031501", ref1="INV42", ref2="A1")
    assert inquiry.status_code == 200
    assert (await sandbox.confirm(inquiry.json(), "k-biller")).json()["status"] == "SUCCESS"


async def test_a_repeated_confirm_returns_the_same_transfer_and_pays_once(sandbox: Sandbox) -> None:
    inquiry = (await sandbox.inquire(10_000)).json()
    first = await sandbox.confirm(inquiry, "order-1")
    again = await sandbox.confirm(inquiry, "order-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    in_body = await sandbox.http.post(
        sandbox.url + "/v1/transfers",
        json={"inquiry_id": inquiry["inquiry_id"], "amount": 10_000, "idempotency_key": "order-1"},
    )
    assert in_body.json()["transfer_id"] == first.json()["transfer_id"]
    assert await sandbox.ledger() == {"paid": 10_000, "returned": 0, "transfers": 1}


async def test_concurrent_confirms_with_one_key_make_one_transfer(sandbox: Sandbox) -> None:
    inquiry = (await sandbox.inquire(7_000)).json()
    answers = await asyncio.gather(*(sandbox.confirm(inquiry, "same") for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    assert len({a.json()["transfer_id"] for a in answers}) == 1
    assert await sandbox.ledger() == {"paid": 7_000, "returned": 0, "transfers": 1}


async def test_a_key_reused_for_another_payment_or_an_inquiry_confirmed_twice_is_a_conflict(
    sandbox: Sandbox,
) -> None:
    one = (await sandbox.inquire(10_000)).json()
    two = (await sandbox.inquire(20_000)).json()
    await sandbox.confirm(one, "k1")
    reused = await sandbox.confirm(two, "k1")
    assert (reused.status_code, reused.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    twice = await sandbox.confirm(one, "k2")
    assert (twice.status_code, twice.json()["code"]) == (409, "INQUIRY_ALREADY_CONFIRMED")
    assert await sandbox.ledger() == {"paid": 10_000, "returned": 0, "transfers": 1}


# --- faults ---


@pytest.mark.parametrize(
    ("fault", "proxy_value", "code"),
    [
        ("reject", MOBILE, "ACCOUNT_CLOSED"),
        ("reject=PROXY_NOT_FOUND", MOBILE, "PROXY_NOT_FOUND"),
        ("reject=bank_unsupported", MOBILE, "BANK_UNSUPPORTED"),
        ("", "0812345404", "PROXY_NOT_FOUND"),
        ("", "0812345410", "ACCOUNT_CLOSED"),
        ("", "0812345501", "BANK_UNSUPPORTED"),
    ],
)
async def test_a_rejected_inquiry_is_a_problem_with_its_code(
    sandbox: Sandbox, fault: str, proxy_value: str, code: str
) -> None:
    answer = await sandbox.inquire(fault=fault, proxy_type="MSISDN", proxy_value=proxy_value)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code


@pytest.mark.parametrize(
    ("fault", "amount", "code"),
    [
        ("insufficient-liquidity", 10_000, "INSUFFICIENT_LIQUIDITY"),
        ("receiver-rejected", 10_000, "RECEIVER_REJECTED"),
        ("", 40_001, "INSUFFICIENT_LIQUIDITY"),
        ("", 40_002, "RECEIVER_REJECTED"),
    ],
)
async def test_a_failed_confirm_pays_nothing_and_calls_back_failed(
    sandbox: Sandbox, receiver: Receiver, fault: str, amount: int, code: str
) -> None:
    key, answer = await sandbox.pay(amount, fault)
    assert answer.status_code == 201
    assert (answer.json()["status"], answer.json()["failure_code"]) == ("FAILED", code)
    await until(lambda: len(receiver.got) == 1)
    assert receiver.got[0].json()["event"] == "transfer.failed"
    assert (await sandbox.by_key(key)).json()["status"] == "FAILED"
    assert (await sandbox.ledger())["paid"] == 0


@pytest.mark.parametrize(("fault", "amount"), [("timeout", 10_000), ("", 50_004)])
async def test_a_timeout_after_commit_leaves_a_transfer_that_polling_and_a_retry_find(
    sandbox: Sandbox, receiver: Receiver, fault: str, amount: int
) -> None:
    inquiry = (await sandbox.inquire(amount)).json()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await sandbox.http.post(
            sandbox.url + "/v1/transfers",
            json={"inquiry_id": inquiry["inquiry_id"], "amount": amount},
            headers={"Idempotency-Key": "t-1", **_fault(fault)},
            timeout=0.3,
        )
    assert time.monotonic() - started < 2
    assert (await sandbox.by_key("t-1")).json()["status"] == "SUCCESS"
    retried = await sandbox.confirm(inquiry, "t-1", fault)
    assert (retried.status_code, retried.json()["status"]) == (200, "SUCCESS")
    await until(lambda: len(receiver.got) == 1)
    assert await sandbox.ledger() == {"paid": amount, "returned": 0, "transfers": 1}


async def test_slow_and_base_latency_delay_the_answer(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(latency_ms=100)
    started = time.monotonic()
    assert (await sandbox.inquire()).status_code == 200
    assert time.monotonic() - started >= 0.1
    started = time.monotonic()
    assert (await sandbox.inquire(fault="slow=300")).status_code == 200
    assert time.monotonic() - started >= 0.4
    health = time.monotonic()
    assert (await sandbox.http.get(sandbox.url + "/healthz")).json() == {"status": "ok"}
    assert time.monotonic() - health < 0.1


@pytest.mark.parametrize(("fault", "amount"), [("server-error", 10_000), ("", 50_003)])
async def test_a_server_error_before_commit_leaves_nothing_and_a_retry_pays(
    sandbox: Sandbox, fault: str, amount: int
) -> None:
    inquiry = (await sandbox.inquire(amount)).json()
    failed = await sandbox.confirm(inquiry, "e-1", fault)
    assert (failed.status_code, failed.json()["code"]) == (503, "SERVER_ERROR")
    missing = await sandbox.by_key("e-1")
    assert (missing.status_code, missing.json()["code"]) == (404, "TRANSFER_NOT_FOUND")
    if amount == 10_000:  # the magic amount fails every time; the header only when sent
        assert (await sandbox.confirm(inquiry, "e-1")).status_code == 201
        assert (await sandbox.ledger())["paid"] == 10_000
    assert (await sandbox.inquire(fault="server-error")).status_code == 503


@pytest.mark.parametrize(("fault", "amount"), [("server-error-after-commit", 10_000), ("", 50_000)])
async def test_a_server_error_after_commit_leaves_the_transfer(
    sandbox: Sandbox, fault: str, amount: int
) -> None:
    key, answer = await sandbox.pay(amount, fault)
    assert (answer.status_code, answer.json()["code"]) == (500, "SERVER_ERROR")
    transfer = (await sandbox.by_key(key)).json()
    assert transfer["status"] == "SUCCESS"
    inquiry = {"inquiry_id": transfer["inquiry_id"], "amount": amount}
    retried = await sandbox.confirm(inquiry, key, fault)
    assert (retried.status_code, retried.json()) == (200, transfer)
    assert (await sandbox.ledger())["paid"] == amount


@pytest.mark.parametrize(("fault", "copies"), [("duplicate-callbacks", 2), ("duplicate-callbacks=3", 3)])
async def test_duplicate_callbacks_repeat_the_same_event(
    sandbox: Sandbox, receiver: Receiver, fault: str, copies: int
) -> None:
    await sandbox.pay(fault=fault)
    await until(lambda: len(receiver.got) == copies)
    await asyncio.sleep(0.1)
    assert len(receiver.got) == copies
    assert len({r.body for r in receiver.got}) == 1
    for received in receiver.got:
        assert_signed(received)


async def test_out_of_order_callbacks_send_a_stale_pending_after_the_final(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    await sandbox.pay(fault="out-of-order-callbacks")
    await until(lambda: len(receiver.got) == 2)
    events = [(r.json()["event"], r.json()["sequence"], r.json()["transfer"]["status"]) for r in receiver.got]
    assert events == [("transfer.succeeded", 2, "SUCCESS"), ("transfer.pending", 1, "PENDING")]


@pytest.mark.parametrize(("fault", "amount", "polls"), [("unknown=2", 10_000, 2), ("", 20_003, 3)])
async def test_unknown_then_success_answers_unknown_for_n_polls(
    sandbox: Sandbox, receiver: Receiver, fault: str, amount: int, polls: int
) -> None:
    key, answer = await sandbox.pay(amount, fault)
    assert answer.json()["status"] == "PENDING"
    seen = [(await sandbox.by_key(key)).json()["status"] for _ in range(polls + 2)]
    assert seen == ["UNKNOWN"] * polls + ["SUCCESS", "SUCCESS"]
    await until(lambda: len(receiver.got) == 1)
    assert receiver.got[0].json()["transfer"]["status"] == "SUCCESS"
    assert (await sandbox.ledger())["paid"] == amount


async def test_pending_settles_by_itself_and_calls_back(sandbox: Sandbox, receiver: Receiver) -> None:
    key, answer = await sandbox.pay(fault="pending")
    assert (answer.json()["status"], answer.json()["trans_ref"]) == ("PENDING", None)
    await until(lambda: len(receiver.got) == 1)
    assert receiver.got[0].json()["event"] == "transfer.succeeded"
    assert (await sandbox.by_key(key)).json()["status"] == "SUCCESS"


async def test_a_callback_is_retried_until_acknowledged(sandbox: Sandbox, receiver: Receiver) -> None:
    receiver.fail_first = 2
    await sandbox.pay()
    await until(lambda: len(receiver.got) == 3)
    deliveries = (await sandbox.http.get(sandbox.url + "/_sim/callbacks")).json()
    assert [(d["attempt"], d["status_code"]) for d in deliveries] == [(1, 500), (2, 500), (3, 204)]


# --- bad input ---


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "INVALID_JSON"),
        (b'{"proxy_type":"MSISDN","proxy_value":"0812345678"}', 422, "INVALID_REQUEST"),
        (b'{"amount":0,"proxy_type":"MSISDN","proxy_value":"0812345678"}', 422, "INVALID_REQUEST"),
        (b'{"amount":100,"proxy_type":"FAX","proxy_value":"0812345678"}', 422, "INVALID_REQUEST"),
        (b'{"amount":100,"proxy_type":"MSISDN","proxy_value":"0812345678","x":1}', 422, "INVALID_REQUEST"),
        (b'{"amount":100,"proxy_type":"MSISDN","proxy_value":"0712345678"}', 422, "INVALID_PROXY"),
        (b'{"amount":100,"proxy_type":"MSISDN","proxy_value":"08123x5678"}', 422, "INVALID_PROXY"),
        (b'{"amount":100,"proxy_type":"NATID","proxy_value":"1234567890123"}', 422, "INVALID_PROXY"),
        (b'{"amount":100,"proxy_type":"EWALLETID","proxy_value":"1234"}', 422, "INVALID_PROXY"),
        (b'{"amount":100,"biller_id":"123","ref1":"A"}', 422, "INVALID_PROXY"),
        (b'{"amount":100,"biller_id":"010753600031501","ref1":"a b"}', 422, "INVALID_PROXY"),
        (b'{"amount":100}', 422, "INVALID_TARGET"),
        (b'{"amount":100,"proxy_type":"MSISDN"}', 422, "INVALID_TARGET"),
        (
            b'{"amount":100,"proxy_type":"MSISDN","proxy_value":"0812345678","ref1":"A"}',
            422,
            "INVALID_TARGET",
        ),
    ],
)
async def test_a_bad_inquiry_is_a_problem_with_a_code(
    sandbox: Sandbox, body: bytes, status: int, code: str
) -> None:
    answer = await sandbox.http.post(sandbox.url + "/v1/inquiry", content=body)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert answer.headers["content-type"] == "application/problem+json"


async def test_valid_thai_ids_pass_the_checksum(sandbox: Sandbox) -> None:
    assert thai_id_valid("0107536000315") and thai_id_valid("8512819188690")
    assert not thai_id_valid("1111111111111")
    answer = await sandbox.inquire(proxy_type="TAXID", proxy_value="0994000165501")
    assert answer.status_code == 200


async def test_a_bad_confirm_is_a_problem_with_a_code(make_sandbox: SandboxFactory) -> None:
    now = [time.time()]
    sandbox = await make_sandbox(clock=lambda: now[0], inquiry_ttl_s=60)
    inquiry = (await sandbox.inquire(10_000)).json()
    url = sandbox.url + "/v1/transfers"

    async def code(body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str]:
        answer = await sandbox.http.post(url, json=body, headers=headers)
        return answer.status_code, answer.json()["code"]

    ok = {"inquiry_id": inquiry["inquiry_id"], "amount": 10_000}
    assert await code(ok) == (422, "MISSING_IDEMPOTENCY_KEY")
    assert await code({**ok, "idempotency_key": "a"}, {"Idempotency-Key": "b"}) == (
        422,
        "IDEMPOTENCY_KEY_CONFLICT",
    )
    assert await code(ok, {"Idempotency-Key": "x" * 129}) == (422, "INVALID_IDEMPOTENCY_KEY")
    assert await code({**ok, "amount": 9_999}, {"Idempotency-Key": "k"}) == (422, "AMOUNT_MISMATCH")
    assert await code({**ok, "inquiry_id": "inq_nope"}, {"Idempotency-Key": "k"}) == (
        404,
        "INQUIRY_NOT_FOUND",
    )
    assert await code(ok, {"Idempotency-Key": "k", "X-Sandbox-Fault": "explode"}) == (400, "INVALID_FAULT")
    assert await code(ok, {"Idempotency-Key": "k", "X-Sandbox-Fault": "slow=soon"}) == (400, "INVALID_FAULT")
    now[0] += 61
    assert await code(ok, {"Idempotency-Key": "k"}) == (422, "INQUIRY_EXPIRED")
    assert await sandbox.ledger() == {"paid": 0, "returned": 0, "transfers": 0}


async def test_unknown_transfers_and_routes_are_404_problems(sandbox: Sandbox) -> None:
    for path in ("/v1/transfers/trf_nope", "/v1/nowhere"):
        answer = await sandbox.http.get(sandbox.url + path)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
    missing = await sandbox.http.get(sandbox.url + "/v1/transfers")
    assert (missing.status_code, missing.json()["code"]) == (400, "MISSING_IDEMPOTENCY_KEY")
    wrong = await sandbox.http.delete(sandbox.url + "/v1/inquiry")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_with_an_auth_secret_only_signed_requests_pass(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(auth_secret="api-secret")
    body = msgspec.json.encode({"amount": 100, "proxy_type": "MSISDN", "proxy_value": MOBILE})
    url = sandbox.url + "/v1/inquiry"

    def signed(secret: str, at: int) -> dict[str, str]:
        message = signing.request_message(at, "POST", "/v1/inquiry", body)
        return {signing.HEADER: signing.sign(secret, at, message)}

    now = int(time.time())
    unsigned = await sandbox.http.post(url, content=body)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "INVALID_SIGNATURE")
    assert (await sandbox.http.post(url, content=body, headers=signed("wrong", now))).status_code == 401
    assert (
        await sandbox.http.post(url, content=body, headers=signed("api-secret", now - 600))
    ).status_code == 401
    assert (await sandbox.http.post(url, content=body, headers=signed("api-secret", now))).status_code == 200
    assert (await sandbox.http.get(sandbox.url + "/healthz")).status_code == 200


def test_settings_come_from_pm_ipps_sandbox_variables() -> None:
    loaded = load({"PM_IPPS_SANDBOX_PORT": "9333", "PM_IPPS_SANDBOX_LATENCY_MS": "50", "PM_REDIS_URL": "x"})
    assert (loaded.port, loaded.latency_ms, loaded.host, loaded.callback_url) == (9333, 50, "127.0.0.1", "")
    assert load({}).port == 9201
    with pytest.raises(SettingsError):
        load({"PM_IPPS_SANDBOX_LATENCY": "50"})


# --- the real process ---


@pytest.mark.slow
async def test_the_module_runs_the_sandbox_as_a_process(receiver: Receiver) -> None:
    port = processes.free_port()
    variables = {
        "PM_IPPS_SANDBOX_CALLBACK_URL": receiver.url,
        "PM_IPPS_SANDBOX_CALLBACK_SECRET": CALLBACK_SECRET,
    }
    env = processes.environment(fleet.IPPS_SANDBOX, variables, port=port)
    process = await processes.spawn_async(fleet.IPPS_SANDBOX, env)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(url + "/healthz")).status_code == 200:
                        break
                assert process.returncode is None, "the sandbox exited"
                assert time.monotonic() < deadline, "the sandbox did not start"
                await asyncio.sleep(0.1)
            sandbox = Sandbox(url, http)
            key, answer = await sandbox.pay(25_000)
            assert answer.json()["status"] == "SUCCESS"
            assert (
                await sandbox.confirm({"inquiry_id": answer.json()["inquiry_id"], "amount": 25_000}, key)
            ).json() == answer.json()
            await until(lambda: len(receiver.got) == 1)
            assert_signed(receiver.got[0])
            assert await sandbox.ledger() == {"paid": 25_000, "returned": 0, "transfers": 1}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert code == 0  # a clean stop, not uvicorn's re-raised SIGTERM
