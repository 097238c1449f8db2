"""The sandbox's JSON bodies: requests, QR views, callbacks and problems. Amounts are integer kopecks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Status = Literal["NEW", "IN_PROGRESS", "ACCEPTED", "REJECTED", "EXPIRED"]
FINAL: frozenset[str] = frozenset({"ACCEPTED", "REJECTED", "EXPIRED"})

# Raiffeisen's rule for `order` (ERROR.INVALID_ORDER): letters, digits, `_`, `-`, `.`.
Order = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]+$", min_length=1, max_length=64)]


class RegisterQr(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/qrs`: a dynamic QR for one payment."""

    order: Order
    """Our idempotency key: the same order and body return the same QR."""
    amount: Annotated[int, msgspec.Meta(ge=1, le=100_000_000_00)]
    currency: Literal["RUB"] = "RUB"
    purpose: Annotated[str, msgspec.Meta(max_length=140)] = ""
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] | None = None


class Payment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional body of the test-control `pay` endpoint."""

    payer_bank: str = "100000000004"


class QrView(msgspec.Struct, frozen=True, kw_only=True):
    qr_id: str
    order: str
    payload: str
    """The `qr.nspk.ru` link to show the payer."""
    amount: int
    currency: str
    purpose: str
    status: Status
    created_at: datetime
    expires_at: datetime
    in_progress_at: datetime | None = None
    accepted_at: datetime | None = None
    rejected_at: datetime | None = None
    expired_at: datetime | None = None
    transaction_id: str | None = None
    payer_bank: str | None = None


class Callback(msgspec.Struct, frozen=True, kw_only=True):
    """The body POSTed to the callback URL on every status change."""

    event_id: str
    """Unique per status change; a redelivery or duplicate repeats it."""
    seq: int
    """1, 2, … per QR in the order the changes happened (deliveries may arrive in another order)."""
    qr_id: str
    order: str
    status: Status
    amount: int
    currency: str
    merchant_id: str
    transaction_id: str | None
    occurred_at: datetime


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One callback delivery attempt, as `GET /v1/sandbox/callbacks` lists them."""

    event_id: str
    qr_id: str
    status: Status
    attempt: int
    http_status: int | None
    error: str | None
    at: datetime


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`application/problem+json` (RFC 9457) with a stable `code`."""

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str | None = None
