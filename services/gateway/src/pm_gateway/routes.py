"""Every API route once: the Starlette routes, the decoding of each request (`pm_gateway.inputs`) and
`GET /openapi.json` are all built from this list (`pm_gateway.endpoints` says what an entry holds)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec

from pm_client.api import (
    ID_PATTERN,
    CreateIntent,
    CreateKey,
    CreateMerchant,
    FeeBreakdown,
    FeeQuote,
    FeeRuleIn,
    FeeRuleOut,
    HistoryPage,
    Id,
    Intent,
    IntentPage,
    IntentType,
    LimitRuleIn,
    LimitRuleOut,
    Merchant,
    OnboardedMerchant,
    OpenWallet,
    RotateKey,
    RouteIn,
    RouteOut,
    RuleId,
    ServiceKeyInfo,
    ServiceKeySecret,
    Wallet,
)
from pm_gateway import admin, intents, merchants, rules, wallets, webhooks
from pm_gateway.endpoints import Endpoint, Param
from pm_gateway.psp_callbacks import (
    IPPS_SIGNATURE_HEADER,
    QP_SIGNATURE_HEADER,
    QP_TIMESTAMP_HEADER,
    IppsCallback,
    QpCallback,
)

LIST_LIMIT_MAX = 200
IDEMPOTENCY_KEY_MAX = 255
_ID_RULE = f"An id: {ID_PATTERN} (1–64 characters, a letter or digit first)."
_IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    "Same key and body: the same intent. 1–255 printable ASCII characters (space included).",
    Annotated[str, msgspec.Meta(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, pattern=r"^[ -~]+(?!\n)$")],
    required=True,
    code="idempotency_key_invalid",
    missing_code="idempotency_key_missing",
)
_PREFER = Param(
    "Prefer",
    "header",
    "`wait=N` (N ≤ 30; larger is read as 30): answer once the intent is terminal or after N s.",
    Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[ -~]*(?!\n)$")],
)
_LIMIT = Param(
    "limit",
    "query",
    f"Page size, 1–{LIST_LIMIT_MAX} (default 50), ASCII digits.",
    Annotated[int, msgspec.Meta(ge=1, le=LIST_LIMIT_MAX)],
    code="limit_invalid",
    default=50,
)
_CURSOR = Param(
    "cursor",
    "query",
    "`nextCursor` of the previous page (opaque, base64url).",
    Annotated[str, msgspec.Meta(min_length=1, max_length=400, pattern=r"^[A-Za-z0-9_-]+(?!\n)$")],
    code="cursor_invalid",
)
_OWNER = Param("owner_id", "path", f"The owner's id. {_ID_RULE}", Id, required=True)
_MERCHANT = Param("merchant_id", "path", f"The merchant id. {_ID_RULE}", Id, required=True)
_KEY = Param("key_id", "path", f"The key id. {_ID_RULE}", Id, required=True)
_RULE = Param("rule_id", "path", "The rule id: lower-case letters, digits, `_ . -`.", RuleId, required=True)
_INTENT = Param(
    "intent_id",
    "path",
    "The intent id (a UUID); one that is not a UUID names no intent (404).",
    uuid.UUID,
    required=True,
    status=404,
    code="intent_not_found",
)
_CHANNEL = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,40}(?!\n)$")]
_BUSY = ("backpressure",)
_PARTY_RULES = ("invalid_parties", "invalid_thai_qr", "qr_amount_mismatch")
_IPPS_HOOKS = webhooks.hooks(webhooks.IPPS)
_QP_HOOKS = webhooks.hooks(webhooks.QP)


def _psp_header(name: str, description: str, kind: Any) -> Param:
    """A header of a PSP's signature: missing or malformed, it is the same 401 as a wrong signature."""
    return Param(
        name,
        "header",
        description,
        kind,
        required=True,
        status=401,
        code="invalid_signature",
        missing_status=401,
        missing_code="invalid_signature",
    )


_SIGNATURE_HEADER = Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[ -~]+(?!\n)$")]

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/v1/intents",
        intents.create,
        "Submit an intent (202 once it is durably accepted).",
        CreateIntent,
        {202: Intent},
        {
            403: ("forbidden_operation", "forbidden_owner"),
            409: ("idempotency_key_reused",),
            422: _PARTY_RULES,
            503: _BUSY,
        },
        (_IDEMPOTENCY, _PREFER),
    ),
    Endpoint(
        "GET",
        "/v1/intents",
        intents.list_,
        "List the intents created with this key (all of them for an admin key), newest first.",
        None,
        {200: IntentPage},
        params=(_LIMIT, _CURSOR),
    ),
    Endpoint(
        "GET",
        "/v1/intents/{intent_id}",
        intents.get,
        "One intent: state, failure code, amounts, fees, ledger legs, timeline.",
        None,
        {200: Intent},
        {404: ("intent_not_found",)},
        (_INTENT, _PREFER),
    ),
    Endpoint(
        "POST",
        "/v1/wallets",
        wallets.open_wallet,
        "Open a wallet (201), or 202 while the ledger-writer is still opening it.",
        OpenWallet,
        {201: Wallet, 202: Wallet},
        {403: ("forbidden_owner",), 503: _BUSY},
        tag="wallets",
    ),
    Endpoint(
        "GET",
        "/v1/wallets/{owner_id}",
        wallets.get_wallet,
        "A wallet's balances per currency, read from the ledger.",
        None,
        {200: Wallet},
        {403: ("forbidden_owner",), 404: ("wallet_not_found",)},
        (_OWNER,),
        tag="wallets",
    ),
    Endpoint(
        "GET",
        "/v1/wallets/{owner_id}/history",
        wallets.history,
        "A wallet's settled movements, newest first.",
        None,
        {200: HistoryPage},
        {403: ("forbidden_owner",)},
        (_OWNER, _LIMIT, _CURSOR),
        tag="wallets",
    ),
    Endpoint(
        "GET",
        "/v1/admin/keys",
        admin.keys,
        "Service keys (never their secrets).",
        None,
        {200: list[ServiceKeyInfo]},
        {403: ("forbidden_admin",)},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/keys",
        admin.create,
        "Create a service key; the answer is the only time its secret is shown.",
        CreateKey,
        {201: ServiceKeySecret},
        {403: ("forbidden_admin",)},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/keys/{key_id}/rotate",
        admin.rotate,
        "A new secret; the previous one stays valid for the grace period. The body may be empty.",
        RotateKey,
        {200: ServiceKeySecret},
        {403: ("forbidden_admin",), 404: ("key_not_found",)},
        (_KEY,),
        tag="admin",
        body_optional=True,
    ),
    Endpoint(
        "POST",
        "/v1/admin/keys/{key_id}/deactivate",
        admin.deactivate,
        "Deactivate a key: its requests are refused from then on. No body.",
        None,
        {200: ServiceKeyInfo},
        {403: ("forbidden_admin",), 404: ("key_not_found",)},
        (_KEY,),
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/merchants",
        merchants.onboard,
        "Onboard a merchant: its service key and one ledger account per currency, idempotently (201, "
        "or 202 while its accounts are being opened: repeat the request). The answer carries the "
        "key's secret.",
        CreateMerchant,
        {201: OnboardedMerchant, 202: OnboardedMerchant},
        {403: ("forbidden_admin",), 409: ("idempotency_key_reused", "merchant_exists"), 503: _BUSY},
        (_IDEMPOTENCY,),
        tag="merchants",
    ),
    Endpoint(
        "GET",
        "/v1/admin/merchants",
        merchants.list_,
        "Every merchant, oldest first.",
        None,
        {200: list[Merchant]},
        {403: ("forbidden_admin",)},
        tag="merchants",
    ),
    Endpoint(
        "GET",
        "/v1/admin/merchants/{merchant_id}",
        merchants.show,
        "One merchant: its key, its accounts (opened or not) and its audit trail.",
        None,
        {200: Merchant},
        {403: ("forbidden_admin",), 404: ("merchant_not_found",)},
        (_MERCHANT,),
        tag="merchants",
    ),
    Endpoint(
        "POST",
        "/v1/admin/merchants/{merchant_id}/deactivate",
        merchants.deactivate,
        "Deactivate a merchant: its key is refused from the next request on; intents in flight finish.",
        None,
        {200: Merchant},
        {403: ("forbidden_admin",), 404: ("merchant_not_found",)},
        (_MERCHANT,),
        tag="merchants",
    ),
    Endpoint(
        "POST",
        "/v1/admin/merchants/{merchant_id}/reactivate",
        merchants.reactivate,
        "Reactivate a merchant: its key signs again.",
        None,
        {200: Merchant},
        {403: ("forbidden_admin",), 404: ("merchant_not_found",)},
        (_MERCHANT,),
        tag="merchants",
    ),
    Endpoint(
        "POST",
        "/v1/admin/merchants/{merchant_id}/rotate-secret",
        merchants.rotate_secret,
        "A new secret for the merchant's key; the previous one stays valid for the grace period.",
        RotateKey,
        {200: ServiceKeySecret},
        {403: ("forbidden_admin",), 404: ("merchant_not_found",)},
        (_MERCHANT,),
        tag="merchants",
        body_optional=True,
    ),
    Endpoint(
        "POST",
        "/v1/fees/dry-run",
        rules.dry_run,
        "The fees an intent would be charged now, by the same engine that prices intents.",
        FeeQuote,
        {200: FeeBreakdown},
        {
            403: ("forbidden_operation", "forbidden_owner"),
            422: (*_PARTY_RULES, "fee_rule_invalid", "fee_rule_error", "fee_invalid", "fee_excessive"),
        },
        tag="fees",
    ),
    Endpoint(
        "GET",
        "/v1/admin/fee-rules",
        rules.list_fee_rules,
        "The newest version of every fee rule.",
        None,
        {200: list[FeeRuleOut]},
        {403: ("forbidden_admin",)},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/fee-rules",
        rules.create_fee_rule,
        "A new fee rule, or the next version of one (its CEL must compile).",
        FeeRuleIn,
        {201: FeeRuleOut},
        {403: ("forbidden_admin",), 409: ("rule_conflict",), 422: ("fee_rule_invalid",)},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/fee-rules/{rule_id}/retire",
        rules.retire_fee_rule,
        "Retire a fee rule (a last version with status retired). No body.",
        None,
        {200: FeeRuleOut},
        {403: ("forbidden_admin",), 404: ("rule_not_found",), 409: ("rule_conflict",)},
        (_RULE,),
        tag="admin",
    ),
    Endpoint(
        "GET",
        "/v1/admin/limit-rules",
        rules.list_limit_rules,
        "The newest version of every limit rule.",
        None,
        {200: list[LimitRuleOut]},
        {403: ("forbidden_admin",)},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/limit-rules",
        rules.create_limit_rule,
        "A new limit rule, or the next version of one.",
        LimitRuleIn,
        {201: LimitRuleOut},
        {403: ("forbidden_admin",), 409: ("rule_conflict",)},
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/admin/limit-rules/{rule_id}/retire",
        rules.retire_limit_rule,
        "Retire a limit rule. No body.",
        None,
        {200: LimitRuleOut},
        {403: ("forbidden_admin",), 404: ("rule_not_found",), 409: ("rule_conflict",)},
        (_RULE,),
        tag="admin",
    ),
    Endpoint(
        "GET",
        "/v1/admin/routes",
        rules.list_routes,
        "Payment routes: operation type and channel to steps.",
        None,
        {200: list[RouteOut]},
        {403: ("forbidden_admin",)},
        tag="admin",
    ),
    Endpoint(
        "PUT",
        "/v1/admin/routes/{operation_type}/{channel}",
        rules.put_route,
        "Create or change a route's steps.",
        RouteIn,
        {200: RouteOut},
        {403: ("forbidden_admin",)},
        (
            Param(
                "operation_type",
                "path",
                "The intent type (another names no route: 404).",
                IntentType,
                required=True,
                status=404,
                code="route_not_found",
            ),
            Param("channel", "path", "The channel: an upper-case identifier.", _CHANNEL, required=True),
        ),
        tag="admin",
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/ipps",
        webhooks.ipps,
        "An IPPS callback (its own signature, from an allowlisted address), passed on as a hint.",
        IppsCallback,
        {200: webhooks.WebhookAck},
        {401: ("invalid_signature",), 403: ("forbidden_source",), 503: _BUSY},
        (
            _psp_header(
                IPPS_SIGNATURE_HEADER, "`t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>`.", _SIGNATURE_HEADER
            ),
        ),
        tag="webhooks",
        signed=False,
        guard=_IPPS_HOOKS.guard,
        verify=_IPPS_HOOKS.verify,
        on_problem=_IPPS_HOOKS.on_problem,
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/qp",
        webhooks.qp,
        "A QP callback (its own signature, from an allowlisted address), passed on as a hint.",
        QpCallback,
        {200: webhooks.WebhookAck},
        {401: ("invalid_signature",), 403: ("forbidden_source",), 503: _BUSY},
        (
            _psp_header(
                QP_TIMESTAMP_HEADER,
                "Unix seconds, ASCII digits.",
                Annotated[str, msgspec.Meta(min_length=1, max_length=12, pattern=r"^[0-9]+(?!\n)$")],
            ),
            _psp_header(QP_SIGNATURE_HEADER, "Hex HMAC-SHA256(secret, timestamp.body).", _SIGNATURE_HEADER),
        ),
        tag="webhooks",
        signed=False,
        guard=_QP_HOOKS.guard,
        verify=_QP_HOOKS.verify,
        on_problem=_QP_HOOKS.on_problem,
    ),
)
