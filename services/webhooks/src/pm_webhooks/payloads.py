"""What a merchant is sent: the event types a state change makes, the merchant it is for, the
deterministic `webhook-id`, and the exact body `{"type", "timestamp", "data"}`.

`data` is the intent as the API shows it (`pm_client.api.Intent`), without what only the API's
`GET` adds (legs, timeline, links) or what is the payer's business (names, comment, metadata); a
`payment_request.confirmed` adds the request's id. Every field is bounded, so a body stays well under
the 20 KB Standard Webhooks recommends (github.com/standard-webhooks/standard-webhooks).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from pm_client.api import Fee, Party
from pm_shared.messages import IntentStateChanged
from pm_shared.webhooks.events import EventType

MERCHANT = "merchant"
REFUND = "REFUND"
CHARGE = "MINIAPP_CHARGE"
PAYMENT_REQUEST_KEY = "payment-request:"
"""The Idempotency-Key a payment request's charge is submitted with (pm_gateway.payment_requests)."""

MAX_BODY_BYTES = 20_000


class IntentData(msgspec.Struct, kw_only=True, rename="camel"):
    """An intent as the API shows it, in a webhook."""

    id: str
    type: str
    status: str
    amount: int
    currency: str
    from_: Party = msgspec.field(name="from")
    to: Party
    fees: list[Fee]
    failure_code: str | None
    miniapp_id: str | None
    original_intent_id: str | None
    created_at: datetime
    updated_at: datetime


class PaymentRequestData(IntentData, kw_only=True, rename="camel"):
    """The charge a confirmed payment request made, with the request's id."""

    payment_request_id: str


class Body(msgspec.Struct, kw_only=True):
    type: str
    timestamp: datetime
    """When the event happened: the state change's production time (ISO-8601), the same on every
    redelivery of it."""
    data: IntentData


_party = msgspec.json.Decoder(Party)
_fees = msgspec.json.Decoder(list[Fee])
_encoder = msgspec.json.Encoder()


def _json(value: Any) -> bytes:
    # asyncpg returns jsonb as text unless a codec is set; accept both.
    return value.encode() if isinstance(value, str) else bytes(value)


def webhook_id(intent_id: str, event_type: str) -> str:
    """The `webhook-id` of one event: the same for every endpoint, attempt, replay and redelivery."""
    digest = hashlib.blake2b(f"{intent_id}:{event_type}".encode(), digest_size=16).hexdigest()
    return f"msg_{digest}"


def merchant_of(row: asyncpg.Record) -> str | None:
    """The merchant an intent concerns: the party of kind `merchant` (a charge's target, a credit's or
    refund's source, either side of an adjustment); None when neither is one."""
    for side in ("target", "source") if row["type"] == CHARGE else ("source", "target"):
        party = msgspec.json.decode(_json(row[side]))
        if isinstance(party, dict) and party.get("kind") == MERCHANT and isinstance(party.get("id"), str):
            return str(party["id"])
    return None


def requested_by(row: asyncpg.Record) -> str | None:
    """The payment request a charge says it was made by (to be checked against the request)."""
    key = row["idempotency_key"]
    if row["type"] != CHARGE or not isinstance(key, str) or not key.startswith(PAYMENT_REQUEST_KEY):
        return None
    return key[len(PAYMENT_REQUEST_KEY) :]


def event_types(change: IntentStateChanged, intent_type: str, by_request: bool) -> list[EventType]:
    """The events one state change makes (`pm_shared.webhooks.events`)."""
    out: list[EventType] = []
    if change.state == "SETTLED":
        out.append("refund.settled" if intent_type == REFUND else "intent.settled")
    elif change.state == "FAILED":
        out.append("intent.failed")
    if by_request and change.previous == "CREATED" and change.state != "CREATED":
        out.append("payment_request.confirmed")
    return out


def data(row: asyncpg.Record, payment_request_id: str | None = None) -> IntentData:
    fields: dict[str, Any] = {
        "id": str(row["id"]),
        "type": row["type"],
        "status": row["state"],
        "amount": row["amount"],
        "currency": row["currency"],
        "from_": _party.decode(_json(row["source"])),
        "to": _party.decode(_json(row["target"])),
        "fees": _fees.decode(_json(row["fees"])),
        "failure_code": row["failure_code"],
        "miniapp_id": row["miniapp_id"],
        "original_intent_id": str(row["original_intent_id"]) if row["original_intent_id"] else None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    if payment_request_id is not None:
        return PaymentRequestData(**fields, payment_request_id=payment_request_id)
    return IntentData(**fields)


def body(event_type: str, at: datetime, intent: IntentData) -> bytes:
    """The exact bytes signed and sent on every attempt."""
    return _encoder.encode(Body(type=event_type, timestamp=at, data=intent))


class _Stamp(msgspec.Struct):
    timestamp: datetime


_stamp = msgspec.json.Decoder(_Stamp)


def event_time(payload: bytes) -> datetime:
    """When the event of a body happened (for the event → delivered latency)."""
    return _stamp.decode(payload).timestamp
