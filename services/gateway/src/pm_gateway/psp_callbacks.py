"""The PSPs' callback wire formats and signatures, as the PSPs define them (the contract is the wire).

IPPS: `X-IPPS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>`; body
`{"event", "sequence", "transfer": {"transfer_id", "idempotency_key", "status", …}}`, and for a
refund (a settled payout the receiving bank sent back, event `transfer.returned`) also `"event_id"`
and `"refund": {"refund_id", "transfer_id", "idempotency_key", "amount", "status", …}`.
QP: `X-QP-Timestamp: <unix seconds>` and `X-QP-Signature: <hex HMAC-SHA256(secret, f"{ts}." + raw
body)>`; body `{"event_id", "seq", "qr_id", "order", "status", …}`.

Both are verified over the raw bytes before anything is parsed, in constant time, and refused when
the signed time is more than `MAX_SKEW_S` from ours (a captured callback cannot be replayed later).
Fields we do not use are ignored, so a PSP adding one breaks nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

import msgspec

MAX_SKEW_S = 300
IPPS_SIGNATURE_HEADER = "X-IPPS-Signature"
QP_TIMESTAMP_HEADER = "X-QP-Timestamp"
QP_SIGNATURE_HEADER = "X-QP-Signature"

# Bounded: these end up in Redis keys and stream entries.
# Visible ASCII only: an id PM could not store or put in a Redis key is refused at the gateway (422),
# not accepted and then dead-lettered by the adapter.
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[!-~]+(?!\n)$")]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
_MAX_HEADER = 512


class IppsTransfer(msgspec.Struct, frozen=True, kw_only=True):
    """The part of an IPPS transfer a callback carries that PM reads."""

    transfer_id: Text
    idempotency_key: Text
    """Our key, as we sent it on confirm."""
    status: Text


class IppsRefund(msgspec.Struct, frozen=True, kw_only=True):
    """The refund a `transfer.returned` callback announces (a claim: the adapter reads IPPS's own)."""

    refund_id: Text
    transfer_id: Text
    """The transfer sent back."""
    idempotency_key: Text
    """Our key of that transfer."""
    status: Text
    amount: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None


class IppsCallback(msgspec.Struct, frozen=True, kw_only=True):
    """An IPPS callback: `transfer.pending|succeeded|failed`, or `transfer.returned` with its
    `event_id` and `refund`; `sequence` grows per transfer."""

    event: Text
    sequence: Sequence
    transfer: IppsTransfer
    event_id: Text | None = None
    """IPPS names its refund events; a transfer's status events it does not."""
    refund: IppsRefund | None = None


class QpCallback(msgspec.Struct, frozen=True, kw_only=True):
    """A QP callback, one per status change of a QR; `event_id` is repeated by a redelivery."""

    event_id: Text
    seq: Sequence
    qr_id: Text
    order: Text
    """Our key, as we sent it on registration."""
    status: Text


def _mac(secret: str, timestamp: str, body: bytes) -> bytes:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode()


def _timestamp(raw: str) -> int | None:
    # Digits only: int() would also take "+1", " 1" or "1_0", which no PSP sends.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


def _fresh(timestamp: int, now: float) -> bool:
    return abs(now - timestamp) <= MAX_SKEW_S


def verify_ipps(secret: str, header: str | None, body: bytes, now: float) -> bool:
    """Whether `header` (X-IPPS-Signature) signs `body` with `secret` at a time within the skew."""
    if not header or len(header) > _MAX_HEADER:
        return False
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq:
            continue
        if name == "t":
            timestamp = _timestamp(value)
        elif name == "v1":
            given.append(value)
    if timestamp is None or not given or not _fresh(timestamp, now):
        return False
    # IPPS signs the number as written by its signer (`f"{t}."`), which is the canonical decimal.
    expected = _mac(secret, str(timestamp), body)
    # Every v1 is compared (a PSP rotating its secret may send two); latin-1 never fails on a header.
    matches = [hmac.compare_digest(expected, v.lower().encode("latin-1")) for v in given]
    return any(matches)


def verify_qp(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> bool:
    """Whether X-QP-Signature signs X-QP-Timestamp and `body` with `secret`, within the skew."""
    if not timestamp or not signature or len(signature) > _MAX_HEADER:
        return False
    at = _timestamp(timestamp)
    if at is None or not _fresh(at, now):
        return False
    # QP signs the header's text as it sent it.
    return hmac.compare_digest(_mac(secret, timestamp, body), signature.lower().encode("latin-1"))
