"""The IPPS sandbox's daily settlement report, `GET /v1/settlements/{day}`, and the faults that alter it.

The report of a UTC day (`YYYY-MM-DD`) is `text/csv`: the header, then one line per transfer that
became final on that day by the sandbox's clock, oldest first (`pm_shared.psp.settlement` defines and
reads the format). It is signed like every `/v1` request (`X-IPPS-Signature` when `auth_secret` is
set) and takes the `/v1` faults (`slow`, `server-error`). A malformed day is a 400 `INVALID_DAY`.

Columns, fixed, for a transfer:

- `psp_reference`: the transfer's `transfer_id` (`trf_…`), the sandbox's own id;
- `merchant_reference`: the idempotency key the transfer was confirmed under (the `Idempotency-Key`
  header, or `idempotency_key` in the body): PM's `pm.psp_tx_map.idempotency_key`;
- `type`: `payout`; `amount`: satang; `currency`: `THB`;
- `fee`: `FEE` satang per payout, flat, the fee inquiries and transfers show (the sandbox's schedule:
  0; a failed transfer is charged nothing either);
- `status`: `SUCCEEDED` for a transfer `SUCCESS`, `FAILED` for `FAILED`; a transfer still `PENDING` is
  in no report until it settles;
- `settled_at`: when it became final (UTC, milliseconds).

Faults (test control, unauthenticated like the other `/_sim` routes; money records are never edited,
only the reports are):

- `POST /_sim/settlement` `{"omit": ["<merchant_reference>", …], "extra": [<line>, …]}` adds to the
  faults every report from now on applies: a transfer whose key is omitted is left out of every
  report; each extra line is added to the report of its `settled_at`'s day. An extra line needs
  `merchant_reference` and `amount`; `psp_reference` (default a new `trf_…`), `type` (`payout`),
  `currency` (`THB`), `fee` (the schedule's), `status` (`SUCCEEDED`) and `settled_at` (default now,
  RFC 3339 with an offset) may be given. Answers the faults now in force, as `GET` does.
- `GET /_sim/settlement`: the faults in force; `DELETE /_sim/settlement`: clears them (honest reports).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated

import msgspec

from pm_sandbox_ipps.state import FEE, TransferRecord
from pm_shared.psp.settlement import LineStatus, LineType, SettlementLine, render

TYPE: LineType = "payout"
CURRENCY = "THB"
_STATUS: dict[str, LineStatus] = {"SUCCESS": "SUCCEEDED", "FAILED": "FAILED"}


def fee(status: LineStatus) -> int:
    """The sandbox's fee schedule: a flat `FEE` satang per successful payout, nothing for a failed one."""
    return FEE if status == "SUCCEEDED" else 0


class ExtraLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A line the next reports carry that matches no transfer (fault `extra`)."""

    merchant_reference: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    amount: Annotated[int, msgspec.Meta(ge=0)]
    psp_reference: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    type: LineType = TYPE
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = CURRENCY
    fee: Annotated[int, msgspec.Meta(ge=0)] | None = None
    status: LineStatus = "SUCCEEDED"
    settled_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class FaultRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /_sim/settlement`."""

    omit: list[Annotated[str, msgspec.Meta(min_length=1)]] = []
    extra: list[ExtraLine] = []


class FaultView(msgspec.Struct, frozen=True, kw_only=True):
    """The faults in force, as `GET /_sim/settlement` shows them."""

    omit: list[str]
    extra: list[SettlementLine]


@dataclass
class ReportFaults:
    omit: set[str] = field(default_factory=set)
    extra: list[SettlementLine] = field(default_factory=list)

    def add(self, asked: FaultRequest, now: float) -> None:
        self.omit.update(asked.omit)
        for line in asked.extra:
            self.extra.append(
                SettlementLine(
                    psp_reference=line.psp_reference or f"trf_{secrets.token_hex(12)}",
                    merchant_reference=line.merchant_reference,
                    type=line.type,
                    amount=line.amount,
                    currency=line.currency,
                    fee=fee(line.status) if line.fee is None else line.fee,
                    status=line.status,
                    settled_at=(line.settled_at or datetime.fromtimestamp(now, UTC)).astimezone(UTC),
                )
            )

    def clear(self) -> None:
        self.omit.clear()
        self.extra.clear()

    def view(self) -> FaultView:
        return FaultView(omit=sorted(self.omit), extra=list(self.extra))


def line(record: TransferRecord) -> SettlementLine | None:
    """The report line of a final transfer; None while it is PENDING."""
    status = _STATUS.get(record.status)
    if status is None:
        return None
    return SettlementLine(
        psp_reference=record.transfer_id,
        merchant_reference=record.key,
        type=TYPE,
        amount=record.amount,
        currency=CURRENCY,
        fee=fee(status),
        status=status,
        settled_at=datetime.fromtimestamp(record.updated, UTC),
    )


def report(transfers: Iterable[TransferRecord], faults: ReportFaults, day: date) -> str:
    """`day`'s report: the transfers final on that day (less those omitted), plus the extra lines."""
    lines = [
        found
        for record in transfers
        if (found := line(record)) is not None
        and found.settled_at.date() == day
        and found.merchant_reference not in faults.omit
    ]
    lines += [extra for extra in faults.extra if extra.settled_at.date() == day]
    return render(sorted(lines, key=lambda found: (found.settled_at, found.psp_reference)))
