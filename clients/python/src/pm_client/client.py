"""The Python client for PM's gateway (docs/api.md): signed requests, typed answers, problem errors.

    from pm_client import CreateIntent, PMClient, UserParty

    async with PMClient("https://pm.example", "key-id", "secret") as pm:
        intent = await pm.create_intent(
            CreateIntent(
                type="P2P", amount=10000, currency="THB",
                from_=UserParty(id="u-1001"), to=UserParty(id="u-1002"),
            ),
            idempotency_key="order-42",
            wait=10,
        )
        intent = await pm.wait_intent(intent.id, timeout=60)
        print(intent.status, intent.failure_code)

`SyncPMClient` has the same methods over a blocking `httpx.Client`. Every request is signed by
`PMAuth`; any 4xx/5xx answer raises `PMError` (with the decoded `api.Problem` when the gateway
sent one). `create_intent` retries a 503 that carries `Retry-After` (back-pressure), which is safe
because its `Idempotency-Key` makes the retry return the same intent; no other status is retried.
A connection that drops before the answer is read (the server closing an idle keep-alive connection
just as a request goes out is the common case) is retried too, up to `retries` times: every call
of this client is idempotent (reads, `create_intent` by its key, `open_wallet` by owner and
currency), and each retry is signed anew. Connection refused and timeouts are raised as the httpx
exceptions they are.

The two clients share everything but the I/O: each method builds a `_Call` (method, path, query,
headers, body, the decoder of its answer), and `_retry_delay` / `_decode` judge the response.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Generic, Self, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from pm_client import api, fx_api, merchant_api, signing

__all__ = ["PMAuth", "PMClient", "PMError", "SyncPMClient"]

T = TypeVar("T")

MAX_RETRY_SLEEP_S = 5.0
"""The longest `create_intent` sleeps before retrying a 503, whatever `Retry-After` asks for."""
MAX_PREFER_WAIT_S = 30
"""The longest `Prefer: wait=N` the gateway honours."""

_ENCODER = msgspec.json.Encoder()
_INTENT = msgspec.json.Decoder(api.Intent)
_INTENT_PAGE = msgspec.json.Decoder(api.IntentPage)
_WALLET = msgspec.json.Decoder(api.Wallet)
_HISTORY_PAGE = msgspec.json.Decoder(api.HistoryPage)
_ONBOARDED = msgspec.json.Decoder(merchant_api.OnboardedMerchant)
_MINIAPP = msgspec.json.Decoder(merchant_api.Miniapp)
_PAYMENT_REQUEST = msgspec.json.Decoder(merchant_api.PaymentRequest)
_RATE = msgspec.json.Decoder(fx_api.Rate)
_QUOTE = msgspec.json.Decoder(fx_api.Quote)
_PROBLEM = msgspec.json.Decoder(api.Problem)
_HEADERS = {"Accept": "application/json", "User-Agent": "pm-client"}


# --- auth and errors ----------------------------------------------------------------------------


class PMAuth(httpx.Auth):
    """Signs every request with a service key (`pm_client.signing`): a fresh nonce each time."""

    requires_request_body = True

    def __init__(self, key_id: str, secret: str) -> None:
        self._key_id = key_id
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # `raw_path` is the path and query string exactly as they go on the wire.
        target = request.url.raw_path.decode("ascii")
        request.headers.update(
            signing.headers(self._key_id, self._secret, request.method, target, request.content)
        )
        yield request


class PMError(Exception):
    """The gateway answered with an error status (or one the called method does not expect)."""

    def __init__(
        self, status: int, problem: api.Problem | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(status, problem, retry_after)

    def __str__(self) -> str:
        if self.problem is None:
            return f"HTTP {self.status}"
        text = f"HTTP {self.status} {self.problem.code}: {self.problem.title}"
        return f"{text} - {self.problem.detail}" if self.problem.detail else text


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds, from either form (delta-seconds or an HTTP date); None if absent."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error(response: httpx.Response) -> PMError:
    problem = None
    if "json" in response.headers.get("Content-Type", ""):
        try:
            problem = _PROBLEM.decode(response.content)
        except msgspec.DecodeError:
            pass
    return PMError(response.status_code, problem, _retry_after(response))


# --- requests, shared by both clients -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One API call, without the I/O: what to send and how to read the answer."""

    method: str
    path: str
    decoder: msgspec.json.Decoder[T]
    ok: frozenset[int] = frozenset({200})
    params: httpx.QueryParams = field(default_factory=httpx.QueryParams)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    retry_503: bool = False


def _segment(value: str) -> str:
    return quote(value, safe="")


def _prefer(wait: float | None) -> dict[str, str]:
    """`Prefer: wait=N`, with N rounded up to whole seconds and kept within 1..30."""
    if wait is None:
        return {}
    seconds = min(MAX_PREFER_WAIT_S, max(1, math.ceil(wait)))
    return {"Prefer": f"wait={seconds}"}


def _page(cursor: str | None, limit: int) -> httpx.QueryParams:
    params = httpx.QueryParams({"limit": limit})
    return params if cursor is None else params.set("cursor", cursor)


def _json(body: msgspec.Struct) -> tuple[bytes, dict[str, str]]:
    return _ENCODER.encode(body), {"Content-Type": "application/json"}


def _create_intent(intent: api.CreateIntent, idempotency_key: str, wait: float | None) -> _Call[api.Intent]:
    content, headers = _json(intent)
    headers |= {"Idempotency-Key": idempotency_key, **_prefer(wait)}
    return _Call(
        "POST",
        "/v1/intents",
        _INTENT,
        ok=frozenset({200, 201, 202}),
        headers=headers,
        content=content,
        retry_503=True,
    )


def _get_intent(intent_id: str, wait: float | None) -> _Call[api.Intent]:
    return _Call("GET", f"/v1/intents/{_segment(intent_id)}", _INTENT, headers=_prefer(wait))


def _list_intents(cursor: str | None, limit: int) -> _Call[api.IntentPage]:
    return _Call("GET", "/v1/intents", _INTENT_PAGE, params=_page(cursor, limit))


def _open_wallet(owner_id: str, currency: str, owner_kind: str) -> _Call[api.Wallet]:
    # Built with `convert` so a bad kind or currency fails here, as the gateway would reject it.
    body = msgspec.convert(
        {"ownerKind": owner_kind, "ownerId": owner_id, "currency": currency}, api.OpenWallet
    )
    content, headers = _json(body)
    return _Call("POST", "/v1/wallets", _WALLET, ok=frozenset({200, 201}), headers=headers, content=content)


def _get_wallet(owner_id: str) -> _Call[api.Wallet]:
    return _Call("GET", f"/v1/wallets/{_segment(owner_id)}", _WALLET)


def _wallet_history(owner_id: str, cursor: str | None, limit: int) -> _Call[api.HistoryPage]:
    path = f"/v1/wallets/{_segment(owner_id)}/history"
    return _Call("GET", path, _HISTORY_PAGE, params=_page(cursor, limit))


def _onboard_merchant(
    merchant: merchant_api.CreateMerchant, idempotency_key: str
) -> _Call[merchant_api.OnboardedMerchant]:
    content, headers = _json(merchant)
    headers["Idempotency-Key"] = idempotency_key
    path = "/v1/admin/merchants"
    return _Call(
        "POST", path, _ONBOARDED, ok=frozenset({201, 202}), headers=headers, content=content, retry_503=True
    )


def _create_miniapp(miniapp: merchant_api.CreateMiniapp) -> _Call[merchant_api.Miniapp]:
    content, headers = _json(miniapp)
    return _Call(
        "POST", "/v1/admin/miniapps", _MINIAPP, ok=frozenset({200, 201}), headers=headers, content=content
    )


def _create_payment_request(
    request: merchant_api.CreatePaymentRequest, idempotency_key: str
) -> _Call[merchant_api.PaymentRequest]:
    content, headers = _json(request)
    headers["Idempotency-Key"] = idempotency_key
    path = "/v1/payment-requests"
    return _Call(
        "POST", path, _PAYMENT_REQUEST, ok=frozenset({201}), headers=headers, content=content, retry_503=True
    )


def _get_payment_request(request_id: str) -> _Call[merchant_api.PaymentRequest]:
    return _Call("GET", f"/v1/payment-requests/{_segment(request_id)}", _PAYMENT_REQUEST)


def _set_fx_rate(rate: fx_api.SetRate) -> _Call[fx_api.Rate]:
    content, headers = _json(rate)
    return _Call("POST", "/v1/admin/fx/rates", _RATE, ok=frozenset({201}), headers=headers, content=content)


def _create_fx_quote(quote: fx_api.CreateQuote) -> _Call[fx_api.Quote]:
    content, headers = _json(quote)
    return _Call("POST", "/v1/fx/quotes", _QUOTE, ok=frozenset({201}), headers=headers, content=content)


def _get_fx_quote(quote_id: str) -> _Call[fx_api.Quote]:
    return _Call("GET", f"/v1/fx/quotes/{_segment(quote_id)}", _QUOTE)


# Failures after which the request may or may not have reached the server, and the answer was lost.
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def _dropped_delay(attempt: int, retries: int) -> float | None:
    """How long to wait before sending again after a dropped connection, or None to give up."""
    return None if attempt >= retries else 0.05 * 2**attempt


def _retry_delay(call: _Call[T], response: httpx.Response, attempt: int, retries: int) -> float | None:
    """How long to sleep before sending `call` again, or None to take `response` as the answer."""
    if not call.retry_503 or response.status_code != 503 or attempt >= retries:
        return None
    after = _retry_after(response)
    return None if after is None else min(after, MAX_RETRY_SLEEP_S)


def _decode(call: _Call[T], response: httpx.Response) -> T:
    if response.status_code not in call.ok:
        raise _error(response)
    return call.decoder.decode(response.content)


def _next_wait(deadline: float) -> float | None:
    """The `Prefer: wait` of `wait_intent`'s next poll, or None once the deadline has passed."""
    remaining = deadline - time.monotonic()
    return None if remaining <= 0 else min(float(MAX_PREFER_WAIT_S), remaining)


# --- the clients --------------------------------------------------------------------------------


class PMClient:
    """Async client. `timeout` (seconds) must stay above the longest `Prefer: wait` (30 s)."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 35.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._retries = retries
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=PMAuth(key_id, secret),
            timeout=timeout,
            headers=_HEADERS,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, headers=call.headers, content=call.content
                )
            except _DROPPED:
                pause = _dropped_delay(attempt, self._retries)
                if pause is None:
                    raise
                attempt += 1
                await asyncio.sleep(pause)
                continue
            delay = _retry_delay(call, response, attempt, self._retries)
            if delay is None:
                return _decode(call, response)
            attempt += 1
            await asyncio.sleep(delay)

    async def create_intent(
        self, intent: api.CreateIntent, *, idempotency_key: str, wait: float | None = None
    ) -> api.Intent:
        return await self._send(_create_intent(intent, idempotency_key, wait))

    async def get_intent(self, intent_id: str, *, wait: float | None = None) -> api.Intent:
        return await self._send(_get_intent(intent_id, wait))

    async def wait_intent(self, intent_id: str, *, timeout: float = 60.0) -> api.Intent:
        """Poll (long-polling) until the intent is terminal or `timeout` passes; return the last seen."""
        deadline = time.monotonic() + timeout
        intent = await self.get_intent(intent_id, wait=_next_wait(deadline))
        while intent.status not in api.TERMINAL_STATES and (wait := _next_wait(deadline)) is not None:
            intent = await self.get_intent(intent_id, wait=wait)
        return intent

    async def list_intents(self, *, cursor: str | None = None, limit: int = 50) -> api.IntentPage:
        return await self._send(_list_intents(cursor, limit))

    async def open_wallet(self, owner_id: str, currency: str, *, owner_kind: str = "user") -> api.Wallet:
        return await self._send(_open_wallet(owner_id, currency, owner_kind))

    async def get_wallet(self, owner_id: str) -> api.Wallet:
        return await self._send(_get_wallet(owner_id))

    async def wallet_history(
        self, owner_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> api.HistoryPage:
        return await self._send(_wallet_history(owner_id, cursor, limit))

    async def onboard_merchant(
        self, merchant: merchant_api.CreateMerchant, *, idempotency_key: str
    ) -> merchant_api.OnboardedMerchant:
        """An admin key: the merchant, its key (with its secret) and accounts; `status == 202`-like
        answers (`accounts[].opened` False) are finished by calling again with the same key."""
        return await self._send(_onboard_merchant(merchant, idempotency_key))

    async def create_miniapp(self, miniapp: merchant_api.CreateMiniapp) -> merchant_api.Miniapp:
        return await self._send(_create_miniapp(miniapp))

    async def create_payment_request(
        self, request: merchant_api.CreatePaymentRequest, *, idempotency_key: str
    ) -> merchant_api.PaymentRequest:
        """A merchant's key: ask a user to pay (nothing moves until the user confirms)."""
        return await self._send(_create_payment_request(request, idempotency_key))

    async def get_payment_request(self, request_id: str) -> merchant_api.PaymentRequest:
        return await self._send(_get_payment_request(request_id))

    async def set_fx_rate(self, rate: fx_api.SetRate) -> fx_api.Rate:
        """An admin key: a pair's new rate (earlier ones are kept)."""
        return await self._send(_set_fx_rate(rate))

    async def create_fx_quote(self, quote: fx_api.CreateQuote) -> fx_api.Quote:
        """A price locked for one FX_EXCHANGE (`CreateIntent(type="FX_EXCHANGE", quote_id=…)`)."""
        return await self._send(_create_fx_quote(quote))

    async def get_fx_quote(self, quote_id: str) -> fx_api.Quote:
        return await self._send(_get_fx_quote(quote_id))


class SyncPMClient:
    """Blocking client with the same methods as `PMClient`."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 35.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._retries = retries
        self._http = httpx.Client(
            base_url=base_url,
            auth=PMAuth(key_id, secret),
            timeout=timeout,
            headers=_HEADERS,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, headers=call.headers, content=call.content
                )
            except _DROPPED:
                pause = _dropped_delay(attempt, self._retries)
                if pause is None:
                    raise
                attempt += 1
                time.sleep(pause)
                continue
            delay = _retry_delay(call, response, attempt, self._retries)
            if delay is None:
                return _decode(call, response)
            attempt += 1
            time.sleep(delay)

    def create_intent(
        self, intent: api.CreateIntent, *, idempotency_key: str, wait: float | None = None
    ) -> api.Intent:
        return self._send(_create_intent(intent, idempotency_key, wait))

    def get_intent(self, intent_id: str, *, wait: float | None = None) -> api.Intent:
        return self._send(_get_intent(intent_id, wait))

    def wait_intent(self, intent_id: str, *, timeout: float = 60.0) -> api.Intent:
        """Poll (long-polling) until the intent is terminal or `timeout` passes; return the last seen."""
        deadline = time.monotonic() + timeout
        intent = self.get_intent(intent_id, wait=_next_wait(deadline))
        while intent.status not in api.TERMINAL_STATES and (wait := _next_wait(deadline)) is not None:
            intent = self.get_intent(intent_id, wait=wait)
        return intent

    def list_intents(self, *, cursor: str | None = None, limit: int = 50) -> api.IntentPage:
        return self._send(_list_intents(cursor, limit))

    def open_wallet(self, owner_id: str, currency: str, *, owner_kind: str = "user") -> api.Wallet:
        return self._send(_open_wallet(owner_id, currency, owner_kind))

    def get_wallet(self, owner_id: str) -> api.Wallet:
        return self._send(_get_wallet(owner_id))

    def wallet_history(self, owner_id: str, *, cursor: str | None = None, limit: int = 50) -> api.HistoryPage:
        return self._send(_wallet_history(owner_id, cursor, limit))

    def onboard_merchant(
        self, merchant: merchant_api.CreateMerchant, *, idempotency_key: str
    ) -> merchant_api.OnboardedMerchant:
        """An admin key: the merchant, its key (with its secret) and accounts; `status == 202`-like
        answers (`accounts[].opened` False) are finished by calling again with the same key."""
        return self._send(_onboard_merchant(merchant, idempotency_key))

    def create_miniapp(self, miniapp: merchant_api.CreateMiniapp) -> merchant_api.Miniapp:
        return self._send(_create_miniapp(miniapp))

    def create_payment_request(
        self, request: merchant_api.CreatePaymentRequest, *, idempotency_key: str
    ) -> merchant_api.PaymentRequest:
        """A merchant's key: ask a user to pay (nothing moves until the user confirms)."""
        return self._send(_create_payment_request(request, idempotency_key))

    def get_payment_request(self, request_id: str) -> merchant_api.PaymentRequest:
        return self._send(_get_payment_request(request_id))

    def set_fx_rate(self, rate: fx_api.SetRate) -> fx_api.Rate:
        """An admin key: a pair's new rate (earlier ones are kept)."""
        return self._send(_set_fx_rate(rate))

    def create_fx_quote(self, quote: fx_api.CreateQuote) -> fx_api.Quote:
        """A price locked for one FX_EXCHANGE (`CreateIntent(type="FX_EXCHANGE", quote_id=…)`)."""
        return self._send(_create_fx_quote(quote))

    def get_fx_quote(self, quote_id: str) -> fx_api.Quote:
        return self._send(_get_fx_quote(quote_id))
