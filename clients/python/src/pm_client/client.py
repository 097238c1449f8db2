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
currency, a merchant's status changes) but `rotate_merchant_secret`, `set_fx_rate`,
`acknowledge_alert`, `resolve_alert`, `request_reconciliation_run` and `rotate_webhook_secret`, which
are not retried, and each retry is signed anew. Connection refused and timeouts are raised as the httpx
exceptions they are.

The two clients share everything but the I/O: each method builds a `calls.Call` (method, path, query,
headers, body, the decoder of its answer), and `_retry_delay` / `_decode` judge the response. The
calls of merchants' webhooks come from `pm_client.webhook_client`'s mixins, built the same way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Generator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self, TypeVar

import httpx
import msgspec

from pm_client import api, calls, fx_api, merchant_api, recon_api, signing
from pm_client.webhook_client import AsyncWebhookCalls, SyncWebhookCalls

__all__ = ["PMAuth", "PMClient", "PMError", "SyncPMClient"]

T = TypeVar("T")

MAX_RETRY_SLEEP_S = 5.0
"""The longest `create_intent` sleeps before retrying a 503, whatever `Retry-After` asks for."""
MAX_PREFER_WAIT_S = calls.MAX_PREFER_WAIT_S

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


# Failures after which the request may or may not have reached the server, and the answer was lost.
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def _dropped_delay(attempt: int, retries: int) -> float | None:
    """How long to wait before sending again after a dropped connection, or None to give up."""
    return None if attempt >= retries else 0.05 * 2**attempt


def _retry_delay(call: calls.Call[T], response: httpx.Response, attempt: int, retries: int) -> float | None:
    """How long to sleep before sending `call` again, or None to take `response` as the answer."""
    if not call.retry_503 or response.status_code != 503 or attempt >= retries:
        return None
    after = _retry_after(response)
    return None if after is None else min(after, MAX_RETRY_SLEEP_S)


def _decode(call: calls.Call[T], response: httpx.Response) -> T:
    if response.status_code not in call.ok:
        raise _error(response)
    return call.decoder.decode(response.content)


def _next_wait(deadline: float) -> float | None:
    """The `Prefer: wait` of `wait_intent`'s next poll, or None once the deadline has passed."""
    remaining = deadline - time.monotonic()
    return None if remaining <= 0 else min(float(MAX_PREFER_WAIT_S), remaining)


# --- the clients --------------------------------------------------------------------------------


class PMClient(AsyncWebhookCalls):
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

    async def _send(self, call: calls.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, headers=call.headers, content=call.content
                )
            except _DROPPED:
                pause = _dropped_delay(attempt, self._retries) if call.retry_dropped else None
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
        return await self._send(calls.create_intent(intent, idempotency_key, wait))

    async def get_intent(self, intent_id: str, *, wait: float | None = None) -> api.Intent:
        return await self._send(calls.get_intent(intent_id, wait))

    async def wait_intent(self, intent_id: str, *, timeout: float = 60.0) -> api.Intent:
        """Poll (long-polling) until the intent is terminal or `timeout` passes; return the last seen."""
        deadline = time.monotonic() + timeout
        intent = await self.get_intent(intent_id, wait=_next_wait(deadline))
        while intent.status not in api.TERMINAL_STATES and (wait := _next_wait(deadline)) is not None:
            intent = await self.get_intent(intent_id, wait=wait)
        return intent

    async def list_intents(self, *, cursor: str | None = None, limit: int = 50) -> api.IntentPage:
        return await self._send(calls.list_intents(cursor, limit))

    async def open_wallet(self, owner_id: str, currency: str, *, owner_kind: str = "user") -> api.Wallet:
        return await self._send(calls.open_wallet(owner_id, currency, owner_kind))

    async def get_wallet(self, owner_id: str) -> api.Wallet:
        return await self._send(calls.get_wallet(owner_id))

    async def wallet_history(
        self, owner_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> api.HistoryPage:
        return await self._send(calls.wallet_history(owner_id, cursor, limit))

    async def onboard_merchant(
        self, merchant: merchant_api.CreateMerchant, *, idempotency_key: str
    ) -> merchant_api.OnboardedMerchant:
        """An admin key: the merchant, its key (with its secret) and accounts; `status == 202`-like
        answers (`accounts[].opened` False) are finished by calling again with the same key."""
        return await self._send(calls.onboard_merchant(merchant, idempotency_key))

    async def create_miniapp(self, miniapp: merchant_api.CreateMiniapp) -> merchant_api.Miniapp:
        return await self._send(calls.create_miniapp(miniapp))

    async def create_payment_request(
        self, request: merchant_api.CreatePaymentRequest, *, idempotency_key: str
    ) -> merchant_api.PaymentRequest:
        """A merchant's key: ask a user to pay (nothing moves until the user confirms)."""
        return await self._send(calls.create_payment_request(request, idempotency_key))

    async def get_payment_request(self, request_id: str) -> merchant_api.PaymentRequest:
        return await self._send(calls.get_payment_request(request_id))

    async def get_merchant(self, merchant_id: str) -> merchant_api.Merchant:
        return await self._send(calls.get_merchant(merchant_id))

    async def list_merchants(self) -> list[merchant_api.Merchant]:
        return await self._send(calls.list_merchants())

    async def deactivate_merchant(self, merchant_id: str) -> merchant_api.Merchant:
        """Its key is refused from the next request on; intents in flight finish."""
        return await self._send(calls.merchant_action(merchant_id, "deactivate"))

    async def close_merchant_accounts(self, merchant_id: str) -> merchant_api.Merchant:
        """A deactivated merchant's accounts closed (`accounts_state` CLOSED; CLOSING: call again)."""
        return await self._send(calls.merchant_action(merchant_id, "close-accounts"))

    async def reactivate_merchant(self, merchant_id: str) -> merchant_api.Merchant:
        """Its accounts reopened, then its key accepted (`status` still INACTIVE: call again)."""
        return await self._send(calls.merchant_action(merchant_id, "reactivate"))

    async def rotate_merchant_secret(
        self, merchant_id: str, *, grace_seconds: int = 86_400
    ) -> api.ServiceKeySecret:
        return await self._send(calls.rotate_merchant_secret(merchant_id, grace_seconds))

    async def list_miniapps(self, merchant_id: str | None = None) -> list[merchant_api.Miniapp]:
        return await self._send(calls.list_miniapps(merchant_id))

    async def deactivate_miniapp(self, miniapp_id: str) -> merchant_api.Miniapp:
        return await self._send(calls.deactivate_miniapp(miniapp_id))

    async def list_fx_rates(self, pair: str | None = None) -> list[fx_api.Rate]:
        return await self._send(calls.list_fx_rates(pair))

    async def set_fx_rate(self, rate: fx_api.SetRate) -> fx_api.Rate:
        """An admin key: a pair's new rate (earlier ones are kept)."""
        return await self._send(calls.set_fx_rate(rate))

    async def create_fx_quote(self, quote: fx_api.CreateQuote) -> fx_api.Quote:
        """A price locked for one FX_EXCHANGE (`CreateIntent(type="FX_EXCHANGE", quote_id=…)`)."""
        return await self._send(calls.create_fx_quote(quote))

    async def get_fx_quote(self, quote_id: str) -> fx_api.Quote:
        return await self._send(calls.get_fx_quote(quote_id))

    async def list_alerts(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> recon_api.AlertPage:
        """An admin key: reconciliation alerts, newest first (unresolved unless `status` says otherwise:
        OPEN, ACKNOWLEDGED, RESOLVED, UNRESOLVED or ALL); the next page is `before=page.next_cursor`."""
        return await self._send(calls.list_alerts(status, kind, before, limit))

    async def get_alert(self, alert_id: int) -> recon_api.AlertDetail:
        """An alert with its action log and its proposed repair, if any."""
        return await self._send(calls.get_alert(alert_id))

    async def acknowledge_alert(self, alert_id: int, *, note: str | None = None) -> recon_api.Alert:
        """OPEN → ACKNOWLEDGED; PMError 409 `alert_state` for any other status (ACKNOWLEDGED too)."""
        return await self._send(calls.alert_action(alert_id, "ack", note))

    async def resolve_alert(self, alert_id: int, *, note: str | None = None) -> recon_api.Alert:
        """OPEN or ACKNOWLEDGED → RESOLVED; PMError 409 `alert_state` for a RESOLVED one."""
        return await self._send(calls.alert_action(alert_id, "resolve", note))

    async def request_reconciliation_run(
        self, sweep: str, *, day: str | None = None
    ) -> recon_api.RunRequested:
        """Ask the reconciler for a sweep of `day` (YYYY-MM-DD, UTC; today by default) now."""
        return await self._send(calls.request_run(sweep, day))

    async def list_reconciliation_runs(
        self, *, sweep: str | None = None, limit: int = 50
    ) -> list[recon_api.Run]:
        return await self._send(calls.list_runs(sweep, limit))

    async def get_reconciliation_report(self, period: str) -> recon_api.Report:
        """The report of a UTC day (`2026-12-07`) or ISO week (`2026-W49`), as data."""
        return await self._send(calls.report(period))

    async def get_reconciliation_report_text(self, period: str, *, media_type: str = "text/csv") -> str:
        """The report as the CSV table (`text/csv`) or the HTML page (`text/html`)."""
        return await self._send(calls.report_text(period, media_type))


class SyncPMClient(SyncWebhookCalls):
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

    def _send(self, call: calls.Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, headers=call.headers, content=call.content
                )
            except _DROPPED:
                pause = _dropped_delay(attempt, self._retries) if call.retry_dropped else None
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
        return self._send(calls.create_intent(intent, idempotency_key, wait))

    def get_intent(self, intent_id: str, *, wait: float | None = None) -> api.Intent:
        return self._send(calls.get_intent(intent_id, wait))

    def wait_intent(self, intent_id: str, *, timeout: float = 60.0) -> api.Intent:
        """Poll (long-polling) until the intent is terminal or `timeout` passes; return the last seen."""
        deadline = time.monotonic() + timeout
        intent = self.get_intent(intent_id, wait=_next_wait(deadline))
        while intent.status not in api.TERMINAL_STATES and (wait := _next_wait(deadline)) is not None:
            intent = self.get_intent(intent_id, wait=wait)
        return intent

    def list_intents(self, *, cursor: str | None = None, limit: int = 50) -> api.IntentPage:
        return self._send(calls.list_intents(cursor, limit))

    def open_wallet(self, owner_id: str, currency: str, *, owner_kind: str = "user") -> api.Wallet:
        return self._send(calls.open_wallet(owner_id, currency, owner_kind))

    def get_wallet(self, owner_id: str) -> api.Wallet:
        return self._send(calls.get_wallet(owner_id))

    def wallet_history(self, owner_id: str, *, cursor: str | None = None, limit: int = 50) -> api.HistoryPage:
        return self._send(calls.wallet_history(owner_id, cursor, limit))

    def onboard_merchant(
        self, merchant: merchant_api.CreateMerchant, *, idempotency_key: str
    ) -> merchant_api.OnboardedMerchant:
        """An admin key: the merchant, its key (with its secret) and accounts; `status == 202`-like
        answers (`accounts[].opened` False) are finished by calling again with the same key."""
        return self._send(calls.onboard_merchant(merchant, idempotency_key))

    def create_miniapp(self, miniapp: merchant_api.CreateMiniapp) -> merchant_api.Miniapp:
        return self._send(calls.create_miniapp(miniapp))

    def create_payment_request(
        self, request: merchant_api.CreatePaymentRequest, *, idempotency_key: str
    ) -> merchant_api.PaymentRequest:
        """A merchant's key: ask a user to pay (nothing moves until the user confirms)."""
        return self._send(calls.create_payment_request(request, idempotency_key))

    def get_payment_request(self, request_id: str) -> merchant_api.PaymentRequest:
        return self._send(calls.get_payment_request(request_id))

    def get_merchant(self, merchant_id: str) -> merchant_api.Merchant:
        return self._send(calls.get_merchant(merchant_id))

    def list_merchants(self) -> list[merchant_api.Merchant]:
        return self._send(calls.list_merchants())

    def deactivate_merchant(self, merchant_id: str) -> merchant_api.Merchant:
        """Its key is refused from the next request on; intents in flight finish."""
        return self._send(calls.merchant_action(merchant_id, "deactivate"))

    def close_merchant_accounts(self, merchant_id: str) -> merchant_api.Merchant:
        """A deactivated merchant's accounts closed (`accounts_state` CLOSED; CLOSING: call again)."""
        return self._send(calls.merchant_action(merchant_id, "close-accounts"))

    def reactivate_merchant(self, merchant_id: str) -> merchant_api.Merchant:
        """Its accounts reopened, then its key accepted (`status` still INACTIVE: call again)."""
        return self._send(calls.merchant_action(merchant_id, "reactivate"))

    def rotate_merchant_secret(
        self, merchant_id: str, *, grace_seconds: int = 86_400
    ) -> api.ServiceKeySecret:
        return self._send(calls.rotate_merchant_secret(merchant_id, grace_seconds))

    def list_miniapps(self, merchant_id: str | None = None) -> list[merchant_api.Miniapp]:
        return self._send(calls.list_miniapps(merchant_id))

    def deactivate_miniapp(self, miniapp_id: str) -> merchant_api.Miniapp:
        return self._send(calls.deactivate_miniapp(miniapp_id))

    def list_fx_rates(self, pair: str | None = None) -> list[fx_api.Rate]:
        return self._send(calls.list_fx_rates(pair))

    def set_fx_rate(self, rate: fx_api.SetRate) -> fx_api.Rate:
        """An admin key: a pair's new rate (earlier ones are kept)."""
        return self._send(calls.set_fx_rate(rate))

    def create_fx_quote(self, quote: fx_api.CreateQuote) -> fx_api.Quote:
        """A price locked for one FX_EXCHANGE (`CreateIntent(type="FX_EXCHANGE", quote_id=…)`)."""
        return self._send(calls.create_fx_quote(quote))

    def get_fx_quote(self, quote_id: str) -> fx_api.Quote:
        return self._send(calls.get_fx_quote(quote_id))

    def list_alerts(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> recon_api.AlertPage:
        """An admin key: reconciliation alerts, newest first (unresolved unless `status` says otherwise:
        OPEN, ACKNOWLEDGED, RESOLVED, UNRESOLVED or ALL); the next page is `before=page.next_cursor`."""
        return self._send(calls.list_alerts(status, kind, before, limit))

    def get_alert(self, alert_id: int) -> recon_api.AlertDetail:
        """An alert with its action log and its proposed repair, if any."""
        return self._send(calls.get_alert(alert_id))

    def acknowledge_alert(self, alert_id: int, *, note: str | None = None) -> recon_api.Alert:
        """OPEN → ACKNOWLEDGED; PMError 409 `alert_state` for any other status (ACKNOWLEDGED too)."""
        return self._send(calls.alert_action(alert_id, "ack", note))

    def resolve_alert(self, alert_id: int, *, note: str | None = None) -> recon_api.Alert:
        """OPEN or ACKNOWLEDGED → RESOLVED; PMError 409 `alert_state` for a RESOLVED one."""
        return self._send(calls.alert_action(alert_id, "resolve", note))

    def request_reconciliation_run(self, sweep: str, *, day: str | None = None) -> recon_api.RunRequested:
        """Ask the reconciler for a sweep of `day` (YYYY-MM-DD, UTC; today by default) now."""
        return self._send(calls.request_run(sweep, day))

    def list_reconciliation_runs(self, *, sweep: str | None = None, limit: int = 50) -> list[recon_api.Run]:
        return self._send(calls.list_runs(sweep, limit))

    def get_reconciliation_report(self, period: str) -> recon_api.Report:
        """The report of a UTC day (`2026-12-07`) or ISO week (`2026-W49`), as data."""
        return self._send(calls.report(period))

    def get_reconciliation_report_text(self, period: str, *, media_type: str = "text/csv") -> str:
        """The report as the CSV table (`text/csv`) or the HTML page (`text/html`)."""
        return self._send(calls.report_text(period, media_type))
