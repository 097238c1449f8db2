"""A reconciliation report as data: what `build` returns and `to_csv` / `to_html` render.

Every amount is an integer in minor units of the row's `currency`. The money sections cover the intents
that *reached* a state within the period (by their `pm.intent_event` timeline, so a report made again
later says the same); the alert section is the state of `pm.reconciliation_alert` when the report was
made. The structs are msgspec Structs, so the admin API can send a report as JSON as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

RevenueSource = Literal["fee", "fx_spread"]


class Volume(msgspec.Struct, frozen=True, kw_only=True):
    """Intents of one type and currency that reached SETTLED in the period: how many, how much."""

    currency: str
    intent_type: str
    count: int
    amount: int


class Revenue(msgspec.Struct, frozen=True, kw_only=True):
    """What the house earned on the period's settled intents of one type, in one currency.

    `source` "fee": the fee-rule fees (`pm.intent.fees`, in each fee's own currency; `count` is the
    number of fees). "fx_spread": the spread of an exchange (`pm.intent.exchange`, in the sold
    currency: an FX_EXCHANGE, or an SBP top-up into another currency; `count` is the number of
    exchanges with a spread).
    """

    currency: str
    source: RevenueSource
    intent_type: str
    count: int
    amount: int


class FxBought(msgspec.Struct, frozen=True, kw_only=True):
    """What the period's settled exchanges bought in `currency` (from the operator's liquidity), for
    `sold_currency`, by intent type."""

    currency: str
    sold_currency: str
    intent_type: str
    count: int
    amount: int


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """Intents that reached FAILED in the period with one failure code, in one currency."""

    currency: str
    failure_code: str
    count: int
    amount: int


class PspTotals(msgspec.Struct, frozen=True, kw_only=True):
    """One PSP's settled totals in one currency for the period, ours against its settlement report.

    Given by the caller (who matched `pm.psp_tx_map` with the PSP's report); the report only shows them.
    `missing`: our settled transactions the PSP's report does not have; `unknown`: the report's
    transactions we have no record of.
    """

    psp: str
    currency: str
    settled_count: int
    settled_amount: int
    report_count: int
    report_amount: int
    report_fee: int
    missing: int = 0
    unknown: int = 0

    @property
    def matches(self) -> bool:
        """Counts and amounts agree and nothing is missing on either side."""
        return (
            self.settled_count == self.report_count
            and self.settled_amount == self.report_amount
            and self.missing == 0
            and self.unknown == 0
        )


class AlertCount(msgspec.Struct, frozen=True, kw_only=True):
    """How many unresolved alerts of one kind are in one status (OPEN or ACKNOWLEDGED)."""

    kind: str
    status: str
    count: int


class OpenAlert(msgspec.Struct, frozen=True, kw_only=True):
    """An unresolved alert, as the report lists it (the oldest first)."""

    id: int
    kind: str
    subject: str | None
    intent_id: str | None
    occurrences: int
    status: str
    created_at: datetime
    last_seen_at: datetime


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """A day's or a week's reconciliation report. Rows are sorted by currency, then by their key."""

    period: str
    """The period's label: `2026-12-07` or `2026-W49`."""
    start: datetime
    end: datetime
    """The period is [start, end), in UTC."""
    generated_at: datetime
    volumes: tuple[Volume, ...] = ()
    revenue: tuple[Revenue, ...] = ()
    fx_bought: tuple[FxBought, ...] = ()
    failures: tuple[Failure, ...] = ()
    psp: tuple[PspTotals, ...] = ()
    alert_counts: tuple[AlertCount, ...] = ()
    open_alerts: tuple[OpenAlert, ...] = ()
    """The oldest unresolved alerts, at most OLDEST_ALERTS of them (`open_alert_total` counts them all)."""
    open_alert_total: int = 0

    def currencies(self) -> list[str]:
        """Every currency any money section has a row in, sorted."""
        rows: list[Volume | Revenue | FxBought | Failure | PspTotals] = [
            *self.volumes,
            *self.revenue,
            *self.fx_bought,
            *self.failures,
            *self.psp,
        ]
        return sorted({row.currency for row in rows})
