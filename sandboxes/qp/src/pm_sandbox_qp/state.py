"""In-memory QR registrations, keyed by our order (idempotency key), and their status machine.

NEW → IN_PROGRESS → ACCEPTED | REJECTED; NEW → EXPIRED after the TTL. Final states never change
(a QR being paid does not expire: the bank decides, not the timer). Every change is returned as a
`Change` for the callback sender; the clock is injectable so tests can move time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from pm_sandbox_qp.faults import QrFaults
from pm_sandbox_qp.models import FINAL, QrView, RegisterQr, Status
from pm_shared.psp import sbp_links as links

Clock = Callable[[], float]


class QrNotFound(LookupError):
    pass


class OrderConflict(Exception):
    """The order is registered already with another body."""


class NotPayable(Exception):
    """The payer cannot act on a QR in this status."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"the QR is {status}")
        self.status = status


@dataclass
class Qr:
    qr_id: str
    order: str
    amount: int
    currency: str
    purpose: str
    payload: str
    digest: str
    created_at: float
    expires_at: float
    faults: QrFaults
    status: Status = "NEW"
    at: dict[str, float] = field(default_factory=dict)
    transaction_id: str | None = None
    payer_bank: str | None = None
    outcome: Status | None = None
    """Where an IN_PROGRESS QR ends once its stuck polls run out."""
    polls_left: int = 0
    seq: int = 0

    def view(self) -> QrView:
        def ts(name: str) -> datetime | None:
            value = self.at.get(name)
            return None if value is None else utc(value)

        return QrView(
            qr_id=self.qr_id,
            order=self.order,
            payload=self.payload,
            amount=self.amount,
            currency=self.currency,
            purpose=self.purpose,
            status=self.status,
            created_at=utc(self.created_at),
            expires_at=utc(self.expires_at),
            in_progress_at=ts("IN_PROGRESS"),
            accepted_at=ts("ACCEPTED"),
            rejected_at=ts("REJECTED"),
            expired_at=ts("EXPIRED"),
            transaction_id=self.transaction_id,
            payer_bank=self.payer_bank,
        )


@dataclass(frozen=True)
class Change:
    qr: Qr
    status: Status
    seq: int
    at: float
    event_id: str


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _digest(request: RegisterQr) -> str:
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest()


class Registry:
    def __init__(self, *, bank: str, default_ttl_s: int, clock: Clock = time.time) -> None:
        self.bank = bank
        self.default_ttl_s = default_ttl_s
        self.clock = clock
        self._by_order: dict[str, Qr] = {}
        self._by_id: dict[str, Qr] = {}

    def register(self, request: RegisterQr, faults: QrFaults) -> tuple[Qr, bool, list[Change]]:
        """The order's QR and whether it is new; the same order with another body is a conflict."""
        digest = _digest(request)
        known = self._by_order.get(request.order)
        if known is not None:
            if known.digest != digest:
                raise OrderConflict(request.order)
            return known, False, self._expire_if_due(known)
        now = self.clock()
        qr_id = links.new_qr_id()
        qr = Qr(
            qr_id=qr_id,
            order=request.order,
            amount=request.amount,
            currency=request.currency,
            purpose=request.purpose,
            payload=links.build(qr_id, self.bank, request.amount, request.currency),
            digest=digest,
            created_at=now,
            expires_at=now if faults.expire else now + (request.ttl_s or self.default_ttl_s),
            faults=faults,
        )
        self._by_order[qr.order] = qr
        self._by_id[qr_id] = qr
        return qr, True, self._expire_if_due(qr)

    def get(self, qr_id: str) -> Qr:
        qr = self._by_id.get(qr_id)
        if qr is None:
            raise QrNotFound(qr_id)
        return qr

    def by_order(self, order: str) -> Qr:
        qr = self._by_order.get(order)
        if qr is None:
            raise QrNotFound(order)
        return qr

    def qrs(self) -> list[Qr]:
        """Every QR registered so far, in registration order."""
        return list(self._by_id.values())

    def poll(self, qr: Qr) -> list[Change]:
        """A status read: expires a due QR, and counts down a stuck payment."""
        changes = self._expire_if_due(qr)
        if qr.status == "IN_PROGRESS" and qr.outcome is not None:
            if qr.polls_left > 0:
                qr.polls_left -= 1
            else:
                changes.append(self._move(qr, qr.outcome))
        return changes

    def pay(self, qr: Qr, outcome: Status, faults: QrFaults, payer_bank: str) -> list[Change]:
        """The payer pays (ACCEPTED) or their bank declines (REJECTED), through IN_PROGRESS."""
        changes = self._expire_if_due(qr)
        if qr.status != "NEW":
            raise NotPayable(qr.status)
        qr.faults.merge(faults)
        qr.payer_bank = payer_bank
        qr.transaction_id = secrets.token_hex(16).upper()
        changes.append(self._move(qr, "IN_PROGRESS"))
        if qr.faults.stuck_polls is not None:
            qr.outcome, qr.polls_left = outcome, qr.faults.stuck_polls
        else:
            changes.append(self._move(qr, outcome))
        return changes

    def expire(self, qr: Qr) -> list[Change]:
        """Test control: the QR's lifetime ends now."""
        if qr.status != "NEW":
            raise NotPayable(qr.status)
        qr.expires_at = min(qr.expires_at, self.clock())
        return self._expire_if_due(qr)

    def expire_due(self) -> list[Change]:
        changes: list[Change] = []
        for qr in self._by_id.values():
            changes.extend(self._expire_if_due(qr))
        return changes

    def _expire_if_due(self, qr: Qr) -> list[Change]:
        if qr.status == "NEW" and self.clock() >= qr.expires_at:
            return [self._move(qr, "EXPIRED")]
        return []

    def _move(self, qr: Qr, status: Status) -> Change:
        assert qr.status not in FINAL, "final states never change"
        now = self.clock()
        qr.status = status
        qr.at[status] = now
        if status in FINAL:
            qr.outcome = None
        qr.seq += 1
        return Change(qr=qr, status=status, seq=qr.seq, at=now, event_id=f"{qr.qr_id}-{qr.seq}")
