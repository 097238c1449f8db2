"""The sandbox's memory: inquiries, transfers keyed by our idempotency key, and their refunds.

Everything here is synchronous and runs between two awaits, so a check and the write that follows it
cannot interleave with another request: a confirm repeated with the same key, even concurrently,
finds the first one's transfer and never pays twice.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pm_sandbox_ipps.faults import Faults
from pm_sandbox_ipps.models import (
    ConfirmRequest,
    Delivery,
    Inquiry,
    PolledStatus,
    Refund,
    SandboxError,
    Transfer,
    TransferStatus,
)
from pm_sandbox_ipps.registry import Receiver

# Delivery attempts kept for GET /_sim/callbacks (a benchmark run would otherwise grow without end).
MAX_DELIVERIES = 10_000
# The sandbox's flat fee per payout, in satang (a receiver never pays it).
FEE = 0
CURRENCY = "THB"


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class InquiryRecord:
    inquiry: Inquiry
    receiver: Receiver
    expires: float
    transfer_id: str | None = None


@dataclass
class TransferRecord:
    transfer_id: str
    key: str
    inquiry_id: str
    amount: int
    faults: Faults
    status: TransferStatus
    created: float
    updated: float
    trans_ref: str | None = None
    failure_code: str | None = None
    polls: int = 0
    refunds: list[RefundRecord] = field(default_factory=list)
    sequence: int = 2
    """The sequence number of the transfer's last callback (its final status is 2)."""

    @property
    def returned(self) -> int:
        return sum(r.amount for r in self.refunds)

    def view(self, status: PolledStatus | None = None) -> Transfer:
        return Transfer(
            transfer_id=self.transfer_id,
            idempotency_key=self.key,
            inquiry_id=self.inquiry_id,
            amount=self.amount,
            fee=FEE,
            status=status or self.status,
            trans_ref=self.trans_ref,
            failure_code=self.failure_code,
            created_at=rfc3339(self.created),
            updated_at=rfc3339(self.updated),
            returned_amount=self.returned,
            refunds=[r.view() for r in self.refunds],
        )


@dataclass
class RefundRecord:
    refund_id: str
    transfer: TransferRecord
    amount: int
    created: float
    sequence: int
    """The sequence number of its callbacks, after the transfer's own."""
    event_id: str
    """The event its callbacks carry (a new event for the same refund gets a new id)."""

    def view(self) -> Refund:
        return Refund(
            refund_id=self.refund_id,
            transfer_id=self.transfer.transfer_id,
            idempotency_key=self.transfer.key,
            amount=self.amount,
            currency=CURRENCY,
            status="COMPLETED",
            created_at=rfc3339(self.created),
        )


def event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


@dataclass
class Store:
    clock: Callable[[], float]
    inquiry_ttl_s: int
    inquiries: dict[str, InquiryRecord] = field(default_factory=dict)
    transfers: dict[str, TransferRecord] = field(default_factory=dict)
    by_key: dict[str, TransferRecord] = field(default_factory=dict)
    refunds: dict[str, RefundRecord] = field(default_factory=dict)
    deliveries: deque[Delivery] = field(default_factory=lambda: deque(maxlen=MAX_DELIVERIES))

    @property
    def paid(self) -> int:
        """Satang paid out so far: what the ledger must agree with."""
        return sum(t.amount for t in self.transfers.values() if t.status == "SUCCESS")

    @property
    def returned(self) -> int:
        """Satang sent back to us so far (refunds)."""
        return sum(r.amount for r in self.refunds.values())

    def inquire(self, receiver: Receiver, amount: int) -> Inquiry:
        now = self.clock()
        inquiry = Inquiry(
            inquiry_id=f"inq_{secrets.token_hex(12)}",
            amount=amount,
            fee=FEE,
            receiver_name_th=receiver.name_th,
            receiver_name_en=receiver.name_en,
            receiving_bank=receiver.bank,
            account=receiver.account,
            expires_at=rfc3339(now + self.inquiry_ttl_s),
        )
        self.inquiries[inquiry.inquiry_id] = InquiryRecord(inquiry, receiver, now + self.inquiry_ttl_s)
        return inquiry

    def confirm(self, request: ConfirmRequest, key: str, faults: Faults) -> tuple[TransferRecord, bool]:
        """The transfer for `key`, and whether this call created it."""
        existing = self.by_key.get(key)
        if existing is not None:
            if (existing.inquiry_id, existing.amount) != (request.inquiry_id, request.amount):
                raise SandboxError(
                    409, "IDEMPOTENCY_KEY_REUSED", f"key {key!r} was used for another inquiry or amount"
                )
            return existing, False
        inquiry = self.inquiries.get(request.inquiry_id)
        if inquiry is None:
            raise SandboxError(404, "INQUIRY_NOT_FOUND", f"no inquiry {request.inquiry_id!r}")
        if inquiry.transfer_id is not None:
            raise SandboxError(
                409, "INQUIRY_ALREADY_CONFIRMED", f"inquiry confirmed as {inquiry.transfer_id} (another key)"
            )
        now = self.clock()
        if now >= inquiry.expires:
            raise SandboxError(422, "INQUIRY_EXPIRED", "the inquiry expired; make a new one")
        if request.amount != inquiry.inquiry.amount:
            raise SandboxError(422, "AMOUNT_MISMATCH", f"the inquiry was for {inquiry.inquiry.amount} satang")
        failure = faults.failure_code
        record = TransferRecord(
            transfer_id=f"trf_{secrets.token_hex(12)}",
            key=key,
            inquiry_id=request.inquiry_id,
            amount=request.amount,
            faults=faults,
            status="FAILED" if failure else "PENDING",
            failure_code=failure,
            created=now,
            updated=now,
        )
        if failure is None and not (faults.pending or faults.unknown_polls):
            self.settle(record)
        inquiry.transfer_id = record.transfer_id
        self.transfers[record.transfer_id] = record
        self.by_key[key] = record
        return record, True

    def settle(self, record: TransferRecord) -> bool:
        """Move a PENDING transfer to SUCCESS; False when it was already final."""
        if record.status != "PENDING":
            return False
        record.status = "SUCCESS"
        record.trans_ref = f"{int(self.clock()):010d}{secrets.randbelow(10**10):010d}"
        record.updated = self.clock()
        return True

    def poll(self, record: TransferRecord) -> tuple[PolledStatus, bool]:
        """What a status read answers, and whether this read settled the transfer (fault `unknown=N`)."""
        if record.status != "PENDING" or not record.faults.unknown_polls:
            return record.status, False
        record.polls += 1
        if record.polls <= record.faults.unknown_polls:
            return "UNKNOWN", False
        return "SUCCESS", self.settle(record)

    def return_transfer(self, record: TransferRecord, amount: int | None, allow_excess: bool) -> RefundRecord:
        """The receiving bank sends `amount` (default: all that is left) of a settled transfer back.

        Refused: a transfer not SUCCESS (409 `TRANSFER_NOT_SETTLED`), and returns adding up to more
        than the transfer (422 `REFUND_EXCEEDS_TRANSFER`) unless the fault `allow_excess` asks for it.
        """
        if record.status != "SUCCESS":
            raise SandboxError(
                409, "TRANSFER_NOT_SETTLED", f"transfer {record.transfer_id} is {record.status}"
            )
        left = record.amount - record.returned
        wanted = left if amount is None else amount
        if not allow_excess and (wanted > left or wanted <= 0):
            raise SandboxError(
                422, "REFUND_EXCEEDS_TRANSFER", f"{left} satang of {record.transfer_id} are left to return"
            )
        if wanted <= 0:
            raise SandboxError(422, "REFUND_EXCEEDS_TRANSFER", "give an amount: nothing is left to return")
        record.sequence += 1
        refund = RefundRecord(
            refund_id=f"rfd_{secrets.token_hex(12)}",
            transfer=record,
            amount=wanted,
            created=self.clock(),
            sequence=record.sequence,
            event_id=event_id(),
        )
        record.refunds.append(refund)
        self.refunds[refund.refund_id] = refund
        return refund
