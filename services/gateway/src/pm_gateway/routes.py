"""Every API route once: the Starlette routes and `GET /openapi.json` are both built from this list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import (
    CreateIntent,
    CreateKey,
    FeeBreakdown,
    FeeQuote,
    FeeRuleIn,
    FeeRuleOut,
    HistoryPage,
    Intent,
    IntentPage,
    LimitRuleIn,
    LimitRuleOut,
    OpenWallet,
    RotateKey,
    RouteIn,
    RouteOut,
    ServiceKeyInfo,
    ServiceKeySecret,
    Wallet,
)
from pm_gateway import admin, intents, rules, wallets, webhooks
from pm_gateway.psp_callbacks import (
    IPPS_SIGNATURE_HEADER,
    QP_SIGNATURE_HEADER,
    QP_TIMESTAMP_HEADER,
    IppsCallback,
    QpCallback,
)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path", "query" or "header"
    description: str
    required: bool = False
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type | None = None
    responses: dict[int, type | None] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    tag: str = "intents"
    signed: bool = True
    """Signed with a PM service key; False for the PSPs' callbacks, which carry their own signature."""


_IDEMPOTENCY = Param("Idempotency-Key", "header", "Same key and body: the same intent. ≤ 255 chars.", True)
_PREFER = Param("Prefer", "header", "`wait=N` (N ≤ 30): answer once the intent is terminal or after N s.")
_LIMIT = Param("limit", "query", "Page size, 1–200 (default 50).", schema={"type": "integer"})
_CURSOR = Param("cursor", "query", "`nextCursor` of the previous page.")

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/v1/intents",
        intents.create,
        "Submit an intent (202 once it is durably accepted).",
        CreateIntent,
        {202: Intent, 400: None, 401: None, 403: None, 409: None, 413: None, 422: None, 503: None},
        (_IDEMPOTENCY, _PREFER),
    ),
    Endpoint(
        "GET",
        "/v1/intents",
        intents.list_,
        "List the intents created with this key (all of them for an admin key), newest first.",
        None,
        {200: IntentPage, 400: None, 401: None},
        (_LIMIT, _CURSOR),
    ),
    Endpoint(
        "GET",
        "/v1/intents/{intent_id}",
        intents.get,
        "One intent: state, failure code, amounts, fees, ledger legs, timeline.",
        None,
        {200: Intent, 401: None, 404: None},
        (Param("intent_id", "path", "The intent id (a UUID).", True), _PREFER),
    ),
    Endpoint(
        "POST",
        "/v1/wallets",
        wallets.open_wallet,
        "Open a wallet (201), or 202 while the ledger-writer is still opening it.",
        OpenWallet,
        {201: Wallet, 202: Wallet, 400: None, 401: None, 403: None, 422: None, 503: None},
        tag="wallets",
    ),
    Endpoint(
        "GET",
        "/v1/wallets/{owner_id}",
        wallets.get_wallet,
        "A wallet's balances per currency, read from the ledger.",
        None,
        {200: Wallet, 401: None, 403: None, 404: None},
        (Param("owner_id", "path", "The owner's id.", True),),
        tag="wallets",
    ),
    Endpoint(
        "GET",
        "/v1/wallets/{owner_id}/history",
        wallets.history,
        "A wallet's settled movements, newest first.",
        None,
        {200: HistoryPage, 400: None, 401: None, 403: None},
        (Param("owner_id", "path", "The owner's id.", True), _LIMIT, _CURSOR),
        tag="wallets",
    ),
    Endpoint(
        "GET",
        "/v1/admin/keys",
        admin.keys,
        "Service keys (never their secrets).",
        None,
        {200: list[ServiceKeyInfo], 401: None, 403: None},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/keys",
        admin.create,
        "Create a service key; the answer is the only time its secret is shown.",
        CreateKey,
        {201: ServiceKeySecret, 401: None, 403: None, 422: None},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/keys/{key_id}/rotate",
        admin.rotate,
        "A new secret; the previous one stays valid for the grace period.",
        RotateKey,
        {200: ServiceKeySecret, 401: None, 403: None, 404: None},
        (Param("key_id", "path", "The key id.", True),),
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/keys/{key_id}/deactivate",
        admin.deactivate,
        "Deactivate a key: its requests are refused from then on.",
        None,
        {200: ServiceKeyInfo, 401: None, 403: None, 404: None},
        (Param("key_id", "path", "The key id.", True),),
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/fees/dry-run",
        rules.dry_run,
        "The fees an intent would be charged now, by the same engine that prices intents.",
        FeeQuote,
        {200: FeeBreakdown, 400: None, 401: None, 403: None, 422: None},
        tag="fees",
    ),
    Endpoint(
        "GET",
        "/v1/admin/fee-rules",
        rules.list_fee_rules,
        "The newest version of every fee rule.",
        None,
        {200: list[FeeRuleOut], 401: None, 403: None},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/fee-rules",
        rules.create_fee_rule,
        "A new fee rule, or the next version of one (its CEL must compile).",
        FeeRuleIn,
        {201: FeeRuleOut, 401: None, 403: None, 422: None},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/fee-rules/{rule_id}/retire",
        rules.retire_fee_rule,
        "Retire a fee rule (a last version with status retired).",
        None,
        {200: FeeRuleOut, 401: None, 403: None, 404: None},
        (Param("rule_id", "path", "The rule id.", True),),
        tag="admin",
    ),
    Endpoint(
        "GET",
        "/v1/admin/limit-rules",
        rules.list_limit_rules,
        "The newest version of every limit rule.",
        None,
        {200: list[LimitRuleOut], 401: None, 403: None},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/limit-rules",
        rules.create_limit_rule,
        "A new limit rule, or the next version of one.",
        LimitRuleIn,
        {201: LimitRuleOut, 401: None, 403: None, 422: None},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/limit-rules/{rule_id}/retire",
        rules.retire_limit_rule,
        "Retire a limit rule.",
        None,
        {200: LimitRuleOut, 401: None, 403: None, 404: None},
        (Param("rule_id", "path", "The rule id.", True),),
        tag="admin",
    ),
    Endpoint(
        "GET",
        "/v1/admin/routes",
        rules.list_routes,
        "Payment routes: operation type and channel to steps.",
        None,
        {200: list[RouteOut], 401: None, 403: None},
        tag="admin",
    ),
    Endpoint(
        "PUT",
        "/v1/admin/routes/{operation_type}/{channel}",
        rules.put_route,
        "Create or change a route's steps.",
        RouteIn,
        {200: RouteOut, 401: None, 403: None, 404: None, 422: None},
        (
            Param("operation_type", "path", "The intent type.", True),
            Param("channel", "path", "The channel.", True),
        ),
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/ipps",
        webhooks.ipps,
        "An IPPS callback (its own signature, from an allowlisted address), passed on as a hint.",
        IppsCallback,
        {200: webhooks.WebhookAck, 400: None, 401: None, 403: None, 413: None, 422: None, 503: None},
        (Param(IPPS_SIGNATURE_HEADER, "header", "`t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>`.", True),),
        tag="webhooks",
        signed=False,
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/qp",
        webhooks.qp,
        "A QP callback (its own signature, from an allowlisted address), passed on as a hint.",
        QpCallback,
        {200: webhooks.WebhookAck, 400: None, 401: None, 403: None, 413: None, 422: None, 503: None},
        (
            Param(QP_TIMESTAMP_HEADER, "header", "Unix seconds.", True),
            Param(QP_SIGNATURE_HEADER, "header", "Hex HMAC-SHA256(secret, timestamp.body).", True),
        ),
        tag="webhooks",
        signed=False,
    ),
)
