"""The refusals the gateway's contract test (services/gateway/tests/test_contract.py) expects of
schema-valid, validly signed requests: business rules beyond the OpenAPI document, by operation.

A new route with such a refusal adds it here, with its reason; the test fails on any other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    why: str
    detail: str = ""
    """A part of the problem's `detail`, where the code alone also covers what the schema should say."""


_NOT_FOUND = "a generated id names nothing that exists"
_CROSS_FIELD = "a rule across fields, beyond the schema (like invalid_parties)"
_NO_ALERT = Refusal(404, "alert_not_found", _NOT_FOUND)
_ALERT_MOVED = Refusal(409, "alert_state", "an alert acted on earlier in this run is past that state")
_NO_SUCH_DAY = "a generated day the calendar lacks (or, for a run, in the future or long past)"
_NO_MERCHANT = Refusal(404, "merchant_not_found", _NOT_FOUND)
_NO_ENDPOINT = Refusal(404, "webhook_endpoint_not_found", _NOT_FOUND)
_NO_DELIVERY = Refusal(404, "webhook_delivery_not_found", _NOT_FOUND)
BUSINESS_REFUSALS: dict[str, tuple[Refusal, ...]] = {
    "POST /v1/intents": (
        Refusal(409, "idempotency_key_reused", "a generated Idempotency-Key comes again with another body"),
        Refusal(403, "forbidden_operation", "MINIAPP_* need a merchant's key, not the admin's", "MINIAPP_"),
        Refusal(403, "charge_needs_consent", "a MINIAPP_CHARGE is made only by a confirmed payment request"),
        Refusal(422, "invalid_parties", "which parties fit which intent type: " + _CROSS_FIELD),
        Refusal(422, "invalid_thai_qr", "the Thai QR payload must parse and pay in THB: " + _CROSS_FIELD),
        Refusal(422, "qr_amount_mismatch", "the QR's amount must be the intent's: " + _CROSS_FIELD),
        Refusal(422, "quote_not_found", "a generated quote id names no quote of this owner"),
        Refusal(422, "quote_expired", "a quote made earlier in this run has expired"),
        Refusal(422, "quote_mismatch", "a quote made earlier in this run sells another amount"),
        Refusal(409, "quote_used", "a quote made earlier in this run was used by another request"),
        Refusal(422, "currency_unsupported", "PromptPay pays THB only: " + _CROSS_FIELD),
        Refusal(422, "unknown_pair", "an SBP top-up into THB or USD needs a RUB rate, none is set"),
        Refusal(404, "original_not_found", "a generated REFUND's originalIntentId names no intent"),
    ),
    "POST /v1/fx/quotes": (
        Refusal(422, "validation_failed", "sell and buy differ: " + _CROSS_FIELD, "two different currencies"),
        Refusal(422, "unknown_pair", "no rate is set for a generated pair"),
        Refusal(422, "rate_stale", "a generated rate's validFrom is long past"),
        Refusal(422, "amount_too_small", "a generated amount buys less than one minor unit"),
        Refusal(422, "amount_too_large", "a generated amount converts to more than one intent may move"),
    ),
    "GET /v1/fx/quotes/{quote_id}": (Refusal(404, "quote_not_found", _NOT_FOUND),),
    "POST /v1/fees/dry-run": (
        Refusal(422, "currency_unsupported", "PromptPay pays THB only: " + _CROSS_FIELD),
        Refusal(403, "forbidden_operation", "MINIAPP_* need a merchant's key, not the admin's", "MINIAPP_"),
        Refusal(422, "invalid_parties", "as for intents: " + _CROSS_FIELD),
        Refusal(422, "invalid_thai_qr", "as for intents: " + _CROSS_FIELD),
        Refusal(422, "qr_amount_mismatch", "as for intents: " + _CROSS_FIELD),
        Refusal(422, "fee_rule_error", "a fee rule created earlier in this run fails on this quote"),
        Refusal(422, "fee_invalid", "a fee rule created earlier in this run prices this quote invalidly"),
        Refusal(422, "fee_excessive", "a fee rule created earlier in this run prices it above the amount"),
    ),
    "GET /v1/intents": (Refusal(400, "cursor_invalid", "a generated cursor is no token this API issued"),),
    "POST /v1/webhooks/ipps": (Refusal(422, "invalid_callback", "refund fields: " + _CROSS_FIELD),),
    "GET /v1/wallets/{owner_id}/history": (
        Refusal(400, "cursor_invalid", "a generated cursor is no token this API issued"),
    ),
    "GET /v1/intents/{intent_id}": (Refusal(404, "intent_not_found", _NOT_FOUND),),
    "GET /v1/wallets/{owner_id}": (Refusal(404, "wallet_not_found", _NOT_FOUND),),
    "POST /v1/admin/keys": (
        Refusal(
            422, "validation_failed", "admin false with ADJUSTMENT or *: " + _CROSS_FIELD, "admin keys only"
        ),
    ),
    "POST /v1/admin/keys/{key_id}/rotate": (Refusal(404, "key_not_found", _NOT_FOUND),),
    "POST /v1/admin/keys/{key_id}/deactivate": (Refusal(404, "key_not_found", _NOT_FOUND),),
    "POST /v1/admin/fee-rules": (
        Refusal(422, "fee_rule_invalid", "its CEL condition and amount must compile, beyond the schema"),
        Refusal(
            422, "validation_failed", "activeUntil after activeFrom: " + _CROSS_FIELD, "activeUntil must"
        ),
    ),
    "POST /v1/admin/limit-rules": (
        Refusal(422, "validation_failed", "maxAmount or maxCount: " + _CROSS_FIELD, "needs maxAmount"),
    ),
    "POST /v1/admin/fee-rules/{rule_id}/retire": (Refusal(404, "rule_not_found", _NOT_FOUND),),
    "POST /v1/admin/merchants": (
        Refusal(409, "merchant_exists", "a generated merchant id was onboarded earlier under another key"),
        Refusal(409, "idempotency_key_reused", "a generated Idempotency-Key comes again with another body"),
    ),
    "GET /v1/admin/merchants/{merchant_id}": (Refusal(404, "merchant_not_found", _NOT_FOUND),),
    "POST /v1/payment-requests": (
        Refusal(403, "forbidden_operation", "a payment request needs a merchant's key, not the admin's"),
    ),
    "GET /v1/payment-requests/{request_id}": (
        Refusal(403, "forbidden_operation", "a payment request needs a merchant's key, not the admin's"),
    ),
    "GET /v1/me/wallets": (Refusal(404, "wallet_not_found", _NOT_FOUND),),
    "POST /v1/me/intents": (
        Refusal(409, "idempotency_key_reused", "a generated Idempotency-Key comes again with another body"),
        Refusal(
            422,
            "invalid_parties",
            "a user never pays themselves, withdrawals go to PromptPay: " + _CROSS_FIELD,
        ),
        Refusal(422, "invalid_thai_qr", "the Thai QR payload must parse and pay in THB: " + _CROSS_FIELD),
        Refusal(422, "qr_amount_mismatch", "the QR's amount must be the intent's: " + _CROSS_FIELD),
        Refusal(422, "currency_unsupported", "PromptPay pays THB only: " + _CROSS_FIELD),
    ),
    "GET /v1/me/intents/{intent_id}": (Refusal(404, "intent_not_found", _NOT_FOUND),),
    "GET /v1/me/history": (Refusal(400, "cursor_invalid", "a generated cursor is no token this API issued"),),
    "POST /v1/me/payment-requests/{request_id}/confirm": (
        Refusal(404, "payment_request_not_found", _NOT_FOUND),
    ),
    "POST /v1/me/payment-requests/{request_id}/decline": (
        Refusal(404, "payment_request_not_found", _NOT_FOUND),
    ),
    "POST /v1/admin/miniapps": (
        Refusal(422, "merchant_not_found", "a generated merchant id names no merchant"),
        Refusal(409, "miniapp_exists", "a generated mini-app id was defined otherwise earlier in this run"),
    ),
    "POST /v1/admin/miniapps/{miniapp_id}/deactivate": (Refusal(404, "miniapp_not_found", _NOT_FOUND),),
    "POST /v1/admin/merchants/{merchant_id}/deactivate": (Refusal(404, "merchant_not_found", _NOT_FOUND),),
    "POST /v1/admin/merchants/{merchant_id}/reactivate": (Refusal(404, "merchant_not_found", _NOT_FOUND),),
    "POST /v1/admin/merchants/{merchant_id}/close-accounts": (
        Refusal(404, "merchant_not_found", _NOT_FOUND),
        Refusal(409, "merchant_active", "a merchant onboarded earlier in this run is still active"),
        Refusal(409, "merchant_busy", "an intent of a merchant onboarded in this run is in flight"),
    ),
    "POST /v1/admin/merchants/{merchant_id}/rotate-secret": (Refusal(404, "merchant_not_found", _NOT_FOUND),),
    "POST /v1/admin/limit-rules/{rule_id}/retire": (Refusal(404, "rule_not_found", _NOT_FOUND),),
    "GET /v1/admin/reconciliation/alerts/{alert_id}": (Refusal(404, "alert_not_found", _NOT_FOUND),),
    "POST /v1/admin/reconciliation/alerts/{alert_id}/ack": (_NO_ALERT, _ALERT_MOVED),
    "POST /v1/admin/reconciliation/alerts/{alert_id}/resolve": (_NO_ALERT, _ALERT_MOVED),
    "POST /v1/admin/reconciliation/runs": (Refusal(422, "bad_run_request", _NO_SUCH_DAY),),
    "GET /v1/admin/reconciliation/reports/{period}": (
        Refusal(422, "period_invalid", _NO_SUCH_DAY, "is not a"),
    ),
    "POST /v1/admin/merchants/{merchant_id}/webhook-endpoints": (
        Refusal(404, "merchant_not_found", "a generated merchant id names no merchant"),
        Refusal(409, "idempotency_key_reused", "a generated Idempotency-Key comes again with another body"),
        Refusal(422, "webhook_url_invalid", "a URL the schema's pattern lets through is no http(s) URL"),
        Refusal(422, "webhook_url_https_required", "http:// is refused unless the gateway allows it"),
        Refusal(422, "webhook_url_not_allowed", "a generated address is private unless allowed by setting"),
    ),
    "GET /v1/admin/merchants/{merchant_id}/webhook-endpoints": (_NO_MERCHANT,),
    "GET /v1/admin/webhook-endpoints/{endpoint_id}": (_NO_ENDPOINT,),
    "POST /v1/admin/webhook-endpoints/{endpoint_id}/rotate-secret": (_NO_ENDPOINT,),
    "POST /v1/admin/webhook-endpoints/{endpoint_id}/disable": (_NO_ENDPOINT,),
    "POST /v1/admin/webhook-endpoints/{endpoint_id}/enable": (_NO_ENDPOINT,),
    "GET /v1/admin/webhook-deliveries/{delivery_id}": (_NO_DELIVERY,),
    "POST /v1/admin/webhook-deliveries/{delivery_id}/replay": (_NO_DELIVERY,),
}
"""`positive_data_acceptance`: how a schema-valid, validly signed request may be refused besides, by
operation, each with its reason. They are matched on the problem's `code` (and part of its detail
where a code is shared), not on the status alone: a 422 for `Expected int, got float` is still a
finding where a 422 for crossed parties is not. Schemathesis itself expects 2xx, or 5xx (reported
once, by `not_a_server_error`): no 401 (every such request is validly signed), no 403 (the admin key
may do everything, and the callbacks come from the allowlisted 127.0.0.1)."""
