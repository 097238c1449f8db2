"""The QP sandbox's daily settlement report, `GET /v1/settlements/{day}`, and the faults that alter it.

The report of a UTC day (`YYYY-MM-DD`) is `text/csv`: the header, then one line per QR that reached a
final state on that day by the sandbox's clock, oldest first (`pm_shared.psp.settlement` defines and
reads the format). It takes the bearer token like every `/v1` request, and the request faults (`5xx`,
`slow`, `timeout`). A malformed day is a 400 `INVALID_DAY`.

Columns, fixed, for a QR:

- `psp_reference`: the QR's `qr_id` (`AD…`), the sandbox's own id (the SBP `transaction_id` of a paid
  QR is not in the report);
- `merchant_reference`: the `order` the QR was registered under: PM's `pm.psp_tx_map.idempotency_key`;
- `type`: `collection`; `amount`: kopecks; `currency`: the QR's (`RUB`);
- `fee`: the sandbox's schedule, `FEE_PER_MILLE` ‰ (0.4 %) of an accepted payment's amount, rounded
  down to a whole kopeck (150.00 RUB → 60 kopecks); nothing for a QR rejected or expired;
- `status`: `SUCCEEDED` for `ACCEPTED`, `FAILED` for `REJECTED` and `EXPIRED`; a QR `NEW` or
  `IN_PROGRESS` is in no report until it ends;
- `settled_at`: when it reached that final state (UTC, milliseconds).

Faults (test control, with the bearer token like the other `/v1/sandbox` routes; money records are
never edited, only the reports are):

- `POST /v1/sandbox/settlement` `{"omit": ["<merchant_reference>", …], "extra": [<line>, …]}` adds to
  the faults every report from now on applies: a QR whose order is omitted is left out of every
  report; each extra line is added to the report of its `settled_at`'s day. An extra line needs
  `merchant_reference` and `amount`; `psp_reference` (default a new QR id), `type` (`collection`),
  `currency` (`RUB`), `fee` (the schedule's), `status` (`SUCCEEDED`) and `settled_at` (default now,
  RFC 3339 with an offset) may be given. Answers the faults now in force, as `GET` does.
- `GET /v1/sandbox/settlement`: the faults in force; `DELETE /v1/sandbox/settlement`: clears them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated

import msgspec

from pm_sandbox_qp.state import Qr
from pm_shared.psp import sbp_links as links
from pm_shared.psp.settlement import LineStatus, LineType, SettlementLine, render

TYPE: LineType = "collection"
CURRENCY = "RUB"
FEE_PER_MILLE = 4
"""The acquirer's fee on an accepted SBP payment: 4 ‰ of its amount, rounded down."""
_STATUS: dict[str, LineStatus] = {"ACCEPTED": "SUCCEEDED", "REJECTED": "FAILED", "EXPIRED": "FAILED"}


def fee(amount: int, status: LineStatus) -> int:
    """The sandbox's fee schedule: 0.4 % of an accepted payment, rounded down; nothing for a failed one."""
    return amount * FEE_PER_MILLE // 1000 if status == "SUCCEEDED" else 0


class ExtraLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A line the next reports carry that matches no QR (fault `extra`)."""

    merchant_reference: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    amount: Annotated[int, msgspec.Meta(ge=0)]
    psp_reference: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    type: LineType = TYPE
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = CURRENCY
    fee: Annotated[int, msgspec.Meta(ge=0)] | None = None
    status: LineStatus = "SUCCEEDED"
    settled_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class FaultRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/sandbox/settlement`."""

    omit: list[Annotated[str, msgspec.Meta(min_length=1)]] = []
    extra: list[ExtraLine] = []


class FaultView(msgspec.Struct, frozen=True, kw_only=True):
    """The faults in force, as `GET /v1/sandbox/settlement` shows them."""

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
                    psp_reference=line.psp_reference or links.new_qr_id(),
                    merchant_reference=line.merchant_reference,
                    type=line.type,
                    amount=line.amount,
                    currency=line.currency,
                    fee=fee(line.amount, line.status) if line.fee is None else line.fee,
                    status=line.status,
                    settled_at=(line.settled_at or datetime.fromtimestamp(now, UTC)).astimezone(UTC),
                )
            )

    def clear(self) -> None:
        self.omit.clear()
        self.extra.clear()

    def view(self) -> FaultView:
        return FaultView(omit=sorted(self.omit), extra=list(self.extra))


def line(qr: Qr) -> SettlementLine | None:
    """The report line of a final QR; None while it is NEW or IN_PROGRESS."""
    status = _STATUS.get(qr.status)
    if status is None:
        return None
    return SettlementLine(
        psp_reference=qr.qr_id,
        merchant_reference=qr.order,
        type=TYPE,
        amount=qr.amount,
        currency=qr.currency,
        fee=fee(qr.amount, status),
        status=status,
        settled_at=datetime.fromtimestamp(qr.at[qr.status], UTC),
    )


def report(qrs: Iterable[Qr], faults: ReportFaults, day: date) -> str:
    """`day`'s report: the QRs final on that day (less those omitted), plus the extra lines."""
    lines = [
        found
        for qr in qrs
        if (found := line(qr)) is not None
        and found.settled_at.date() == day
        and found.merchant_reference not in faults.omit
    ]
    lines += [extra for extra in faults.extra if extra.settled_at.date() == day]
    return render(sorted(lines, key=lambda found: (found.settled_at, found.psp_reference)))
