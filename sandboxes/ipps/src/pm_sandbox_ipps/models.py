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


class Callback(msgspec.Struct, frozen=True, kw_only=True):
    """POSTed to `callback_url` (signed, see `signing`); `sequence` grows per transfer."""

    event: Literal["transfer.pending", "transfer.succeeded", "transfer.failed"]
    sequence: int
    transfer: Transfer


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
