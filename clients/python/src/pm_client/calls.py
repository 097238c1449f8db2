"""The API calls both clients make (`pm_client.client`), without the I/O: each function builds a `Call`
(method, path, query, headers, body, the statuses it expects and the decoder of its answer)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from pm_client import api, fx_api, merchant_api, recon_api, webhook_api

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    """What reads a call's answer: a `msgspec.json.Decoder`, or `TEXT` for a document that is not JSON."""

    def decode(self, buf: bytes, /) -> T_co: ...


class _Text:
    """The body as text (a report's CSV or HTML page is UTF-8)."""

    def decode(self, buf: bytes, /) -> str:
        return buf.decode("utf-8")


TEXT = _Text()

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
_RATES = msgspec.json.Decoder(list[fx_api.Rate])
_MERCHANT = msgspec.json.Decoder(merchant_api.Merchant)
_MERCHANTS = msgspec.json.Decoder(list[merchant_api.Merchant])
_MINIAPPS = msgspec.json.Decoder(list[merchant_api.Miniapp])
_KEY_SECRET = msgspec.json.Decoder(api.ServiceKeySecret)
_ALERT = msgspec.json.Decoder(recon_api.Alert)
_ALERT_DETAIL = msgspec.json.Decoder(recon_api.AlertDetail)
_ALERT_PAGE = msgspec.json.Decoder(recon_api.AlertPage)
_RUN_REQUESTED = msgspec.json.Decoder(recon_api.RunRequested)
_RUNS = msgspec.json.Decoder(list[recon_api.Run])
_REPORT = msgspec.json.Decoder(recon_api.Report)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API call, without the I/O: what to send and how to read the answer."""

    method: str
    path: str
    decoder: Decoder[T]
    ok: frozenset[int] = frozenset({200})
    params: httpx.QueryParams = field(default_factory=httpx.QueryParams)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    retry_503: bool = False
    retry_dropped: bool = True
    """Whether a dropped connection may be retried: False for the calls a repeat would not leave as
    they are (a second rotation would lose the first's secret)."""


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


def create_intent(intent: api.CreateIntent, idempotency_key: str, wait: float | None) -> Call[api.Intent]:
    content, headers = _json(intent)
    headers |= {"Idempotency-Key": idempotency_key, **_prefer(wait)}
    return Call(
        "POST",
        "/v1/intents",
        _INTENT,
        ok=frozenset({200, 201, 202}),
        headers=headers,
        content=content,
        retry_503=True,
    )


def get_intent(intent_id: str, wait: float | None) -> Call[api.Intent]:
    return Call("GET", f"/v1/intents/{_segment(intent_id)}", _INTENT, headers=_prefer(wait))


def list_intents(cursor: str | None, limit: int) -> Call[api.IntentPage]:
    return Call("GET", "/v1/intents", _INTENT_PAGE, params=_page(cursor, limit))


def open_wallet(owner_id: str, currency: str, owner_kind: str) -> Call[api.Wallet]:
    # Built with `convert` so a bad kind or currency fails here, as the gateway would reject it.
    body = msgspec.convert(
        {"ownerKind": owner_kind, "ownerId": owner_id, "currency": currency}, api.OpenWallet
    )
    content, headers = _json(body)
    return Call("POST", "/v1/wallets", _WALLET, ok=frozenset({200, 201}), headers=headers, content=content)


def get_wallet(owner_id: str) -> Call[api.Wallet]:
    return Call("GET", f"/v1/wallets/{_segment(owner_id)}", _WALLET)


def wallet_history(owner_id: str, cursor: str | None, limit: int) -> Call[api.HistoryPage]:
    path = f"/v1/wallets/{_segment(owner_id)}/history"
    return Call("GET", path, _HISTORY_PAGE, params=_page(cursor, limit))


def onboard_merchant(
    merchant: merchant_api.CreateMerchant, idempotency_key: str
) -> Call[merchant_api.OnboardedMerchant]:
    content, headers = _json(merchant)
    headers["Idempotency-Key"] = idempotency_key
    path = "/v1/admin/merchants"
    return Call(
        "POST", path, _ONBOARDED, ok=frozenset({201, 202}), headers=headers, content=content, retry_503=True
    )


def create_miniapp(miniapp: merchant_api.CreateMiniapp) -> Call[merchant_api.Miniapp]:
    content, headers = _json(miniapp)
    return Call(
        "POST", "/v1/admin/miniapps", _MINIAPP, ok=frozenset({200, 201}), headers=headers, content=content
    )


def create_payment_request(
    request: merchant_api.CreatePaymentRequest, idempotency_key: str
) -> Call[merchant_api.PaymentRequest]:
    content, headers = _json(request)
    headers["Idempotency-Key"] = idempotency_key
    path = "/v1/payment-requests"
    return Call(
        "POST", path, _PAYMENT_REQUEST, ok=frozenset({201}), headers=headers, content=content, retry_503=True
    )


def get_payment_request(request_id: str) -> Call[merchant_api.PaymentRequest]:
    return Call("GET", f"/v1/payment-requests/{_segment(request_id)}", _PAYMENT_REQUEST)


def get_merchant(merchant_id: str) -> Call[merchant_api.Merchant]:
    return Call("GET", f"/v1/admin/merchants/{_segment(merchant_id)}", _MERCHANT)


def list_merchants() -> Call[list[merchant_api.Merchant]]:
    return Call("GET", "/v1/admin/merchants", _MERCHANTS)


def merchant_action(merchant_id: str, action: str) -> Call[merchant_api.Merchant]:
    """`deactivate`, `close-accounts` or `reactivate` (the last two answer 202 while under way)."""
    path = f"/v1/admin/merchants/{_segment(merchant_id)}/{action}"
    return Call("POST", path, _MERCHANT, ok=frozenset({200, 202}), retry_503=True)


def rotate_merchant_secret(merchant_id: str, grace_seconds: int) -> Call[api.ServiceKeySecret]:
    content, headers = _json(api.RotateKey(grace_seconds=grace_seconds))
    path = f"/v1/admin/merchants/{_segment(merchant_id)}/rotate-secret"
    return Call("POST", path, _KEY_SECRET, headers=headers, content=content, retry_dropped=False)


def list_miniapps(merchant_id: str | None) -> Call[list[merchant_api.Miniapp]]:
    params = httpx.QueryParams() if merchant_id is None else httpx.QueryParams({"merchant": merchant_id})
    return Call("GET", "/v1/admin/miniapps", _MINIAPPS, params=params)


def deactivate_miniapp(miniapp_id: str) -> Call[merchant_api.Miniapp]:
    return Call("POST", f"/v1/admin/miniapps/{_segment(miniapp_id)}/deactivate", _MINIAPP)


def set_fx_rate(rate: fx_api.SetRate) -> Call[fx_api.Rate]:
    content, headers = _json(rate)
    # Not retried on a dropped connection: a repeat would record the rate twice.
    return Call(
        "POST",
        "/v1/admin/fx/rates",
        _RATE,
        ok=frozenset({201}),
        headers=headers,
        content=content,
        retry_dropped=False,
    )


def list_fx_rates(pair: str | None) -> Call[list[fx_api.Rate]]:
    params = httpx.QueryParams() if pair is None else httpx.QueryParams({"pair": pair})
    return Call("GET", "/v1/admin/fx/rates", _RATES, params=params)


def create_fx_quote(quote: fx_api.CreateQuote) -> Call[fx_api.Quote]:
    content, headers = _json(quote)
    return Call("POST", "/v1/fx/quotes", _QUOTE, ok=frozenset({201}), headers=headers, content=content)


def get_fx_quote(quote_id: str) -> Call[fx_api.Quote]:
    return Call("GET", f"/v1/fx/quotes/{_segment(quote_id)}", _QUOTE)


# --- reconciliation (admin keys) ------------------------------------------------------------------


def list_alerts(
    status: str | None, kind: str | None, before: int | None, limit: int
) -> Call[recon_api.AlertPage]:
    """A page of alerts; `status` None is the gateway's default (UNRESOLVED)."""
    given = {"status": status, "kind": kind, "before": before, "limit": limit}
    params = httpx.QueryParams({k: v for k, v in given.items() if v is not None})
    return Call("GET", "/v1/admin/reconciliation/alerts", _ALERT_PAGE, params=params)


def get_alert(alert_id: int) -> Call[recon_api.AlertDetail]:
    return Call("GET", f"/v1/admin/reconciliation/alerts/{int(alert_id)}", _ALERT_DETAIL)


def alert_action(alert_id: int, action: str, note: str | None) -> Call[recon_api.Alert]:
    """`ack` or `resolve`. Not retried on a dropped connection: a repeat of one that was done is 409
    `alert_state`, which would hide that it was."""
    # Without a note, `{}`: the alert keeps the note it has.
    content = b"{}" if note is None else _ENCODER.encode(recon_api.AlertNote(note=note))
    headers = {"Content-Type": "application/json"}
    path = f"/v1/admin/reconciliation/alerts/{int(alert_id)}/{action}"
    return Call("POST", path, _ALERT, headers=headers, content=content, retry_dropped=False)


def request_run(sweep: str, day: str | None) -> Call[recon_api.RunRequested]:
    # Built with `convert` so an unknown sweep fails here, as the gateway would refuse it.
    body = msgspec.convert({"sweep": sweep, "day": day}, recon_api.RequestRun)
    content, headers = _json(body)
    # Not retried on a dropped connection: a repeat would queue the sweep twice.
    return Call(
        "POST",
        "/v1/admin/reconciliation/runs",
        _RUN_REQUESTED,
        ok=frozenset({202}),
        headers=headers,
        content=content,
        retry_dropped=False,
    )


def list_runs(sweep: str | None, limit: int) -> Call[list[recon_api.Run]]:
    params = httpx.QueryParams({"limit": limit} if sweep is None else {"sweep": sweep, "limit": limit})
    return Call("GET", "/v1/admin/reconciliation/runs", _RUNS, params=params)


def report(period: str) -> Call[recon_api.Report]:
    path = f"/v1/admin/reconciliation/reports/{_segment(period)}"
    return Call("GET", path, _REPORT, headers={"Accept": "application/json"})


def report_text(period: str, media_type: str) -> Call[str]:
    """The report as `text/csv` or `text/html`."""
    if media_type not in recon_api.REPORT_MEDIA_TYPES[1:]:
        raise ValueError(f"a report comes as text/csv or text/html, not {media_type!r}")
    path = f"/v1/admin/reconciliation/reports/{_segment(period)}"
    return Call("GET", path, TEXT, headers={"Accept": media_type})


# --- merchants' webhooks (admin keys) -------------------------------------------------------------

_ENDPOINT = msgspec.json.Decoder(webhook_api.WebhookEndpoint)
_ENDPOINTS = msgspec.json.Decoder(list[webhook_api.WebhookEndpoint])
_ENDPOINT_DETAIL = msgspec.json.Decoder(webhook_api.WebhookEndpointDetail)
_ENDPOINT_SECRET = msgspec.json.Decoder(webhook_api.WebhookEndpointSecret)
_DELIVERY = msgspec.json.Decoder(webhook_api.WebhookDelivery)
_DELIVERY_DETAIL = msgspec.json.Decoder(webhook_api.WebhookDeliveryDetail)
_DELIVERY_PAGE = msgspec.json.Decoder(webhook_api.WebhookDeliveryPage)


def create_webhook_endpoint(
    merchant_id: str, url: str, event_types: list[str], idempotency_key: str
) -> Call[webhook_api.WebhookEndpointSecret]:
    # Built with `convert` so an unknown event type fails here, as the gateway would refuse it.
    body = msgspec.convert({"url": url, "eventTypes": event_types}, webhook_api.CreateWebhookEndpoint)
    content, headers = _json(body)
    headers["Idempotency-Key"] = idempotency_key
    path = f"/v1/admin/merchants/{_segment(merchant_id)}/webhook-endpoints"
    return Call("POST", path, _ENDPOINT_SECRET, ok=frozenset({201}), headers=headers, content=content)


def list_webhook_endpoints(merchant_id: str) -> Call[list[webhook_api.WebhookEndpoint]]:
    return Call("GET", f"/v1/admin/merchants/{_segment(merchant_id)}/webhook-endpoints", _ENDPOINTS)


def get_webhook_endpoint(endpoint_id: str) -> Call[webhook_api.WebhookEndpointDetail]:
    return Call("GET", f"/v1/admin/webhook-endpoints/{_segment(endpoint_id)}", _ENDPOINT_DETAIL)


def rotate_webhook_secret(endpoint_id: str, grace_seconds: int) -> Call[webhook_api.WebhookEndpointSecret]:
    content, headers = _json(webhook_api.RotateWebhookSecret(grace_seconds=grace_seconds))
    path = f"/v1/admin/webhook-endpoints/{_segment(endpoint_id)}/rotate-secret"
    # Not retried on a dropped connection: a second rotation would lose the first's secret.
    return Call("POST", path, _ENDPOINT_SECRET, headers=headers, content=content, retry_dropped=False)


def disable_webhook_endpoint(endpoint_id: str, reason: str | None) -> Call[webhook_api.WebhookEndpoint]:
    content, headers = _json(webhook_api.DisableWebhookEndpoint(reason=reason))
    path = f"/v1/admin/webhook-endpoints/{_segment(endpoint_id)}/disable"
    return Call("POST", path, _ENDPOINT, headers=headers, content=content)


def enable_webhook_endpoint(endpoint_id: str) -> Call[webhook_api.WebhookEndpoint]:
    return Call("POST", f"/v1/admin/webhook-endpoints/{_segment(endpoint_id)}/enable", _ENDPOINT)


def list_webhook_deliveries(
    merchant_id: str | None, endpoint_id: str | None, status: str | None, before: int | None, limit: int
) -> Call[webhook_api.WebhookDeliveryPage]:
    given = {"merchant": merchant_id, "endpoint": endpoint_id, "status": status, "before": before}
    params = httpx.QueryParams({**{k: v for k, v in given.items() if v is not None}, "limit": limit})
    return Call("GET", "/v1/admin/webhook-deliveries", _DELIVERY_PAGE, params=params)


def get_webhook_delivery(delivery_id: int) -> Call[webhook_api.WebhookDeliveryDetail]:
    return Call("GET", f"/v1/admin/webhook-deliveries/{int(delivery_id)}", _DELIVERY_DETAIL)


def replay_webhook_delivery(delivery_id: int) -> Call[webhook_api.WebhookDelivery]:
    # Retried on a dropped connection: asking again before the sender attempts it is one attempt.
    path = f"/v1/admin/webhook-deliveries/{int(delivery_id)}/replay"
    return Call("POST", path, _DELIVERY, ok=frozenset({202}))
