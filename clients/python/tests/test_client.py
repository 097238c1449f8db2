"""pm_client.client against httpx.MockTransport: signing, headers, bodies, errors, retries, long polls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

import pm_client
from pm_client import api, signing
from pm_client.client import MAX_RETRY_SLEEP_S, PMClient, PMError, SyncPMClient, _retry_after

BASE = "http://pm.test"
KEY_ID = "key-1"
SECRET = "s3cret"

Handler = Callable[[httpx.Request], httpx.Response]


def intent_json(status: str = "CREATED", intent_id: str = "i-1") -> dict[str, Any]:
    return {
        "id": intent_id,
        "status": status,
        "type": "P2P",
        "amount": 10000,
        "currency": "THB",
        "from": {"kind": "user", "id": "u-1001"},
        "to": {"kind": "user", "id": "u-1002"},
        "fees": [],
        "failureCode": None,
        "links": {"self": f"/v1/intents/{intent_id}"},
        "someFutureField": 1,
    }


def problem(status: int, code: str, title: str, detail: str | None = None, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": status, "code": code, "detail": detail}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json", **headers})


class Recorder:
    """A MockTransport that keeps every request and answers from a list (the last one repeats)."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return answer(request) if callable(answer) else answer


def client(recorder: Recorder, **kwargs: Any) -> PMClient:
    return PMClient(BASE, KEY_ID, SECRET, transport=recorder.transport, **kwargs)


def sync_client(recorder: Recorder, **kwargs: Any) -> SyncPMClient:
    return SyncPMClient(BASE, KEY_ID, SECRET, transport=recorder.transport, **kwargs)


def p2p() -> api.CreateIntent:
    return api.CreateIntent(
        type="P2P",
        amount=10000,
        currency="THB",
        from_=api.UserParty(id="u-1001"),
        to=api.UserParty(id="u-1002"),
        from_name="Somchai",
        comment="dinner",
    )


def assert_signed(request: httpx.Request, target: str) -> None:
    """Verify the signature the way the gateway does, from what arrived."""
    headers = request.headers
    assert headers[signing.KEY_HEADER] == KEY_ID
    assert abs(int(headers[signing.TIMESTAMP_HEADER]) - time.time()) < 5
    assert request.url.raw_path.decode() == target
    message = signing.string_to_sign(
        headers[signing.TIMESTAMP_HEADER],
        headers[signing.NONCE_HEADER],
        request.method,
        target,
        request.content,
    )
    assert signing.matches([SECRET], headers[signing.SIGNATURE_HEADER], message)
    assert not signing.matches(["another-secret"], headers[signing.SIGNATURE_HEADER], message)


# --- signing ------------------------------------------------------------------------------------


async def test_query_string_is_signed_as_sent() -> None:
    page = {"items": [intent_json()], "nextCursor": "c-2"}
    recorder = Recorder(httpx.Response(200, json=page))
    async with client(recorder) as pm:
        result = await pm.list_intents(cursor="c 1/+", limit=5)
    assert [i.id for i in result.items] == ["i-1"]
    assert result.next_cursor == "c-2"
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.params["cursor"] == "c 1/+"
    assert_signed(request, "/v1/intents?limit=5&cursor=c+1%2F%2B")
    # The query is part of what is signed: the same signature does not cover the bare path.
    headers = request.headers
    bare = signing.string_to_sign(
        headers[signing.TIMESTAMP_HEADER], headers[signing.NONCE_HEADER], "GET", "/v1/intents", b""
    )
    assert not signing.matches([SECRET], headers[signing.SIGNATURE_HEADER], bare)


async def test_body_is_signed() -> None:
    recorder = Recorder(httpx.Response(202, json=intent_json()))
    async with client(recorder) as pm:
        await pm.create_intent(p2p(), idempotency_key="k-1")
    (request,) = recorder.requests
    assert request.content
    assert_signed(request, "/v1/intents")
    headers = request.headers
    tampered = signing.string_to_sign(
        headers[signing.TIMESTAMP_HEADER],
        headers[signing.NONCE_HEADER],
        "POST",
        "/v1/intents",
        request.content.replace(b"10000", b"99999"),
    )
    assert not signing.matches([SECRET], headers[signing.SIGNATURE_HEADER], tampered)


async def test_path_segments_are_quoted_and_signed() -> None:
    balance = {"currency": "THB", "available": 5, "pending": 1, "posted": 6}
    wallet = {"ownerId": "u/1 x", "balances": [balance]}
    recorder = Recorder(httpx.Response(200, json=wallet))
    async with client(recorder) as pm:
        result = await pm.get_wallet("u/1 x")
    assert result.balances[0].available == 5
    (request,) = recorder.requests
    assert_signed(request, "/v1/wallets/u%2F1%20x")


async def test_base_url_prefix_is_part_of_the_signed_path() -> None:
    recorder = Recorder(httpx.Response(200, json=intent_json()))
    async with PMClient(f"{BASE}/pm", KEY_ID, SECRET, transport=recorder.transport) as pm:
        await pm.get_intent("i-1")
    assert_signed(recorder.requests[0], "/pm/v1/intents/i-1")


# --- requests -----------------------------------------------------------------------------------


async def test_create_intent_sends_the_contract_body_and_headers() -> None:
    recorder = Recorder(httpx.Response(202, json=intent_json()))
    async with client(recorder) as pm:
        intent = await pm.create_intent(p2p(), idempotency_key="order-42", wait=10)
    assert intent.id == "i-1"
    assert intent.from_ == api.UserParty(id="u-1001")
    (request,) = recorder.requests
    assert (request.method, request.url.path) == ("POST", "/v1/intents")
    assert request.headers["Idempotency-Key"] == "order-42"
    assert request.headers["Prefer"] == "wait=10"
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == msgspec.json.encode(p2p())
    assert json.loads(request.content) == {
        "type": "P2P",
        "amount": 10000,
        "currency": "THB",
        "from": {"kind": "user", "id": "u-1001"},
        "to": {"kind": "user", "id": "u-1002"},
        "fromName": "Somchai",
        "toName": None,
        "comment": "dinner",
        "requiresMonitoring": False,
        "metadata": {},
        "miniappId": None,
        "quoteId": None,
        "originalIntentId": None,
    }


@pytest.mark.parametrize(
    ("wait", "header"), [(None, None), (0.2, "wait=1"), (7.5, "wait=8"), (45, "wait=30")]
)
async def test_prefer_wait_is_whole_seconds_within_1_to_30(wait: float | None, header: str | None) -> None:
    recorder = Recorder(httpx.Response(200, json=intent_json()))
    async with client(recorder) as pm:
        await pm.get_intent("i-1", wait=wait)
    assert recorder.requests[0].headers.get("Prefer") == header


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_create_intent_accepts_200_201_202(status: int) -> None:
    recorder = Recorder(httpx.Response(status, json=intent_json()))
    async with client(recorder) as pm:
        intent = await pm.create_intent(p2p(), idempotency_key="k")
    assert intent.status == "CREATED"
    assert "Prefer" not in recorder.requests[0].headers


async def test_wallet_routes() -> None:
    wallet = {"ownerId": "u-1", "balances": [{"currency": "THB", "available": 0, "pending": 0, "posted": 0}]}
    entry = {
        "intentId": "i-1",
        "type": "P2P",
        "direction": "out",
        "amount": 100,
        "currency": "THB",
        "at": "2026-01-02T03:04:05Z",
    }
    recorder = Recorder(
        httpx.Response(201, json=wallet), httpx.Response(200, json={"items": [entry], "nextCursor": None})
    )
    async with client(recorder) as pm:
        opened = await pm.open_wallet("u-1", "THB")
        history = await pm.wallet_history("u-1", cursor="c", limit=10)
    assert opened.owner_id == "u-1"
    assert history.items[0].direction == "out" and history.next_cursor is None
    open_request, history_request = recorder.requests
    assert json.loads(open_request.content) == {"ownerKind": "user", "ownerId": "u-1", "currency": "THB"}
    assert open_request.method == "POST"
    assert_signed(open_request, "/v1/wallets")
    assert_signed(history_request, "/v1/wallets/u-1/history?limit=10&cursor=c")


async def test_open_wallet_rejects_an_unknown_currency_before_sending() -> None:
    recorder = Recorder(httpx.Response(201, json={}))
    async with client(recorder) as pm:
        with pytest.raises(msgspec.ValidationError):
            await pm.open_wallet("u-1", "EUR")
    assert recorder.requests == []


# --- errors -------------------------------------------------------------------------------------


async def test_problem_becomes_pm_error() -> None:
    recorder = Recorder(problem(409, "idempotency_conflict", "Conflict", "key reused with another body"))
    async with client(recorder) as pm:
        with pytest.raises(PMError) as caught:
            await pm.create_intent(p2p(), idempotency_key="k")
    error = caught.value
    assert error.status == 409
    assert error.problem is not None and error.problem.code == "idempotency_conflict"
    assert error.retry_after is None
    assert str(error) == "HTTP 409 idempotency_conflict: Conflict - key reused with another body"
    assert len(recorder.requests) == 1


async def test_retry_after_is_carried_and_other_methods_do_not_retry() -> None:
    recorder = Recorder(problem(503, "overloaded", "Busy", **{"Retry-After": "0"}))
    async with client(recorder) as pm:
        with pytest.raises(PMError) as caught:
            await pm.get_intent("i-1")
    assert (caught.value.status, caught.value.retry_after) == (503, 0.0)
    assert str(caught.value) == "HTTP 503 overloaded: Busy"
    assert len(recorder.requests) == 1


async def test_error_without_a_problem_body() -> None:
    recorder = Recorder(httpx.Response(502, text="<html>bad gateway</html>", headers={"Retry-After": "7"}))
    async with client(recorder) as pm:
        with pytest.raises(PMError) as caught:
            await pm.get_wallet("u-1")
    assert (caught.value.status, caught.value.problem, caught.value.retry_after) == (502, None, 7.0)
    assert str(caught.value) == "HTTP 502"


def test_retry_after_forms() -> None:
    def after(value: str) -> float | None:
        return _retry_after(httpx.Response(503, headers={"Retry-After": value}))

    assert after("2.5") == 2.5
    assert after("-3") == 0.0
    assert after("nan") is None
    assert after("soon") is None
    assert after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 100))
    seconds = after(future)
    assert seconds is not None and 90 < seconds <= 100
    assert _retry_after(httpx.Response(503)) is None


# --- retries ------------------------------------------------------------------------------------


async def test_create_intent_retries_503_with_the_same_key_and_a_fresh_nonce() -> None:
    busy = problem(503, "overloaded", "Busy", **{"Retry-After": "0"})
    recorder = Recorder(busy, busy, httpx.Response(202, json=intent_json()))
    async with client(recorder) as pm:
        intent = await pm.create_intent(p2p(), idempotency_key="order-42")
    assert intent.id == "i-1"
    assert len(recorder.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in recorder.requests} == {"order-42"}
    assert len({r.headers[signing.NONCE_HEADER] for r in recorder.requests}) == 3
    assert {r.content for r in recorder.requests} == {msgspec.json.encode(p2p())}
    for request in recorder.requests:
        assert_signed(request, "/v1/intents")


async def test_create_intent_gives_up_after_retries() -> None:
    recorder = Recorder(problem(503, "overloaded", "Busy", **{"Retry-After": "0"}))
    async with client(recorder, retries=2) as pm:
        with pytest.raises(PMError) as caught:
            await pm.create_intent(p2p(), idempotency_key="k")
    assert caught.value.status == 503
    assert len(recorder.requests) == 3


async def test_503_without_retry_after_is_not_retried() -> None:
    recorder = Recorder(problem(503, "unavailable", "Down"), httpx.Response(202, json=intent_json()))
    async with client(recorder) as pm:
        with pytest.raises(PMError):
            await pm.create_intent(p2p(), idempotency_key="k")
    assert len(recorder.requests) == 1


async def test_retry_sleep_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("pm_client.client.asyncio.sleep", fake_sleep)
    busy = problem(503, "overloaded", "Busy", **{"Retry-After": "120"})
    recorder = Recorder(busy, httpx.Response(202, json=intent_json()))
    async with client(recorder) as pm:
        await pm.create_intent(p2p(), idempotency_key="k")
    assert slept == [MAX_RETRY_SLEEP_S]


# --- long polling -------------------------------------------------------------------------------


async def test_wait_intent_returns_once_terminal() -> None:
    states = iter(["CREATED", "AUTHORIZED", "SETTLED", "FAILED"])
    recorder = Recorder(lambda _: httpx.Response(200, json=intent_json(next(states))))
    async with client(recorder) as pm:
        intent = await pm.wait_intent("i-1", timeout=60)
    assert intent.status == "SETTLED"
    assert len(recorder.requests) == 3
    assert [r.headers["Prefer"] for r in recorder.requests] == ["wait=30"] * 3
    for request in recorder.requests:
        assert_signed(request, "/v1/intents/i-1")


async def test_wait_intent_returns_the_last_seen_at_timeout() -> None:
    recorder = Recorder(httpx.Response(200, json=intent_json("AUTHORIZED")))
    async with client(recorder) as pm:
        intent = await pm.wait_intent("i-1", timeout=0.05)
    assert intent.status == "AUTHORIZED"
    assert recorder.requests[0].headers["Prefer"] == "wait=1"


# --- the blocking client ------------------------------------------------------------------------


def test_sync_client_create_and_get_intent() -> None:
    busy = problem(503, "overloaded", "Busy", **{"Retry-After": "0"})
    recorder = Recorder(
        busy,
        httpx.Response(202, json=intent_json()),
        httpx.Response(200, json=intent_json("SETTLED")),
    )
    with sync_client(recorder) as pm:
        created = pm.create_intent(p2p(), idempotency_key="order-42", wait=5)
        fetched = pm.get_intent("i/1", wait=3)
    assert (created.status, fetched.status) == ("CREATED", "SETTLED")
    first, retry, get = recorder.requests
    for request in (first, retry):
        assert request.headers["Idempotency-Key"] == "order-42"
        assert request.headers["Prefer"] == "wait=5"
        assert request.content == msgspec.json.encode(p2p())
        assert_signed(request, "/v1/intents")
    assert first.headers[signing.NONCE_HEADER] != retry.headers[signing.NONCE_HEADER]
    assert get.headers["Prefer"] == "wait=3"
    assert_signed(get, "/v1/intents/i%2F1")


def test_sync_client_errors_and_wait() -> None:
    states = iter(["VALIDATED", "FAILED"])
    recorder = Recorder(
        problem(404, "not_found", "No such intent"),
        lambda _: httpx.Response(200, json=intent_json(next(states))),
    )
    with sync_client(recorder) as pm:
        with pytest.raises(PMError) as caught:
            pm.get_intent("nope")
        intent = pm.wait_intent("i-1", timeout=10)
    assert caught.value.status == 404
    assert caught.value.problem is not None and caught.value.problem.code == "not_found"
    assert intent.status == "FAILED"
    assert [r.headers.get("Prefer") for r in recorder.requests] == [None, "wait=10", "wait=10"]


def dropping(times: int, then: httpx.Response) -> Handler:
    """Drops the connection `times` times (the answer never arrives), then answers `then`."""
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise httpx.ReadError("connection reset by peer", request=request)
        return then

    return handle


async def test_a_dropped_connection_is_retried_with_the_same_key_and_a_fresh_nonce() -> None:
    recorder = Recorder(dropping(2, httpx.Response(202, json=intent_json())))
    async with client(recorder) as pm:
        intent = await pm.create_intent(p2p(), idempotency_key="order-7")
    assert intent.id == "i-1"
    assert len(recorder.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in recorder.requests} == {"order-7"}
    assert len({r.headers[signing.NONCE_HEADER] for r in recorder.requests}) == 3


def test_the_sync_client_retries_a_dropped_connection_too() -> None:
    recorder = Recorder(dropping(1, httpx.Response(200, json=intent_json())))
    with sync_client(recorder) as pm:
        assert pm.get_intent("i-1").id == "i-1"
    assert len(recorder.requests) == 2


async def test_a_connection_that_keeps_dropping_is_given_up() -> None:
    recorder = Recorder(dropping(10, httpx.Response(202, json=intent_json())))
    async with client(recorder, retries=2) as pm:
        with pytest.raises(httpx.ReadError):
            await pm.create_intent(p2p(), idempotency_key="k")
    assert len(recorder.requests) == 3


def test_the_package_exports_the_clients_and_the_common_types_under_their_own_names() -> None:
    assert set(pm_client.__all__) == {
        name
        for name in vars(pm_client)
        if not name.startswith("_")
        and name
        not in (
            "annotations",
            "api",
            "calls",
            "client",
            "fx_api",
            "merchant_api",
            "recon_api",
            "signing",
            "webhook_api",
            "webhook_client",
        )
    }
    assert pm_client.SyncPMClient is SyncPMClient
    assert pm_client.CreateIntent is api.CreateIntent
    assert frozenset({"SETTLED", "FAILED"}) == pm_client.TERMINAL_STATES
