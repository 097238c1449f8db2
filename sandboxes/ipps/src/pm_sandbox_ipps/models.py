"""The sandbox's wire format: request and response bodies (JSON; amounts are integer satang)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Satang = Annotated[int, msgspec.Meta(ge=1, le=200_000_000)]
"""1 satang to 2,000,000.00 THB, the largest single PromptPay transfer before a bank auto-splits."""
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ProxyType = Literal["MSISDN", "NATID", "TAXID", "EWALLETID", "BANKAC"]
TransferStatus = Literal["PENDING", "SUCCESS", "FAILED"]
PolledStatus = Literal["UNKNOWN", "PENDING", "SUCCESS", "FAILED"]
RefundStatus = Literal["COMPLETED"]
"""A return is a credit transfer the receiving bank has already made back to us: complete when known."""


class InquiryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Either a PromptPay proxy (`proxy_type` + `proxy_value`) or a biller (`biller_id` + `ref1`)."""

    amount: Satang
    proxy_type: ProxyType | None = None
    proxy_value: str | None = None
    biller_id: str | None = None
    ref1: str | None = None
    ref2: str | None = None


class Inquiry(msgspec.Struct, frozen=True, kw_only=True):
    inquiry_id: str
    amount: int
    fee: int
    receiver_name_th: str
    receiver_name_en: str
    receiving_bank: str
    account: str
    """Masked, `xxx-x-x1234-x`."""
    expires_at: str
    """RFC 3339, UTC."""


class ConfirmRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    inquiry_id: str
    amount: Satang
    idempotency_key: Key | None = None
    """Our key; the `Idempotency-Key` header may carry it instead (both: they must agree)."""


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    """A settled transfer (or part of it) the receiving bank sent back: a new credit transfer to us."""

    refund_id: str
    transfer_id: str
    """The transfer it returns."""
    idempotency_key: str
    """The key that transfer was confirmed under (ours)."""
    amount: int
    currency: str
    status: RefundStatus
    created_at: str
    """RFC 3339, UTC."""


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    transfer_id: str
    idempotency_key: str
    inquiry_id: str
    amount: int
    fee: int
    status: PolledStatus
    trans_ref: str | None = None
    """The bank's reference, set on SUCCESS."""
    failure_code: str | None = None
    created_at: str
    updated_at: str
    returned_amount: int = 0
    """Satang sent back so far (the sum of `refunds`)."""
    refunds: list[Refund] = []


class Callback(msgspec.Struct, frozen=True, kw_only=True):
    """POSTed to `callback_url` (signed, see `signing`); `sequence` grows per transfer."""

    event: Literal["transfer.pending", "transfer.succeeded", "transfer.failed"]
    sequence: int
    transfer: Transfer


class RefundCallback(msgspec.Struct, frozen=True, kw_only=True):
    """POSTed for each refund (signed as `Callback` is). `event_id` names this event: a redelivery
    repeats it; the same refund notified as a new event gets a new one."""

    event: Literal["transfer.returned"]
    event_id: str
    sequence: int
    transfer: Transfer
    refund: Refund


class ReturnRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /_sim/transfers/{id}/return`: the receiving bank sends a settled transfer back."""

    amount: Satang | None = None
    """What is sent back; the whole of what is left of the transfer when absent."""
    callback: Literal["now", "hold"] = "now"
    """`hold`: no callback until `POST /_sim/refunds/{id}/callback` asks for one."""
    allow_excess: bool = False
    """Fault: a bank that sends back more than it received (PM must not credit the excess)."""


class CallbackRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /_sim/refunds/{id}/callback`: deliver a refund's callback (again)."""

    new_event: bool = False
    """A new event id (a PSP notifying the same refund twice), rather than a redelivery of the last."""
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 0
    """Delivered this late (another callback sent meanwhile arrives first)."""


class OutageRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /_sim/outage`: IPPS is down for the next `requests` `/v1` requests (0: up again)."""

    requests: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details with a machine-readable `code`."""

    status: int
    code: str
    title: str
    detail: str = ""
    type: str = "about:blank"


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One callback delivery attempt, as `GET /_sim/callbacks` lists them."""

    transfer_id: str
    event: str
    sequence: int
    attempt: int
    status_code: int | None
    error: str | None = None
    event_id: str | None = None
    refund_id: str | None = None


class SandboxError(Exception):
    """An answer other than success: becomes a `Problem` with this status and code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    def problem(self) -> Problem:
        return Problem(
            status=self.status, code=self.code, title=self.code.replace("_", " ").lower(), detail=self.detail
        )
