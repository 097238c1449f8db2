"""A report as one flat CSV table a spreadsheet can filter and pivot (RFC 4180: comma, CRLF, a header).

Columns, in order (a cell a row has no use for is empty):

- `period`: the report's period, `2026-12-07` or `2026-W49`, on every row.
- `section`: `volume`, `fee`, `fx_bought`, `failure`, `psp` or `alerts`.
- `currency`: ISO 4217 code of the row's amounts (empty on `alerts` rows).
- `key`: what the row is about: the intent type (volume, fee, fx_bought), the failure code (failure),
  the PSP (psp), the alert kind (alerts).
- `item`: which figure of it:
  volume `settled`; fee `fee` (fee-rule fees) or `fx_spread` (exchange spread revenue);
  fx_bought `bought`; failure `failed`;
  psp `ours` (our settled count/amount), `theirs` (the PSP report's count/amount/fee), `missing`
  (count of ours not in theirs), `unknown` (count of theirs not in ours);
  alerts `count` (unresolved alerts of that kind in `status`) or `oldest` (one of the oldest 50
  unresolved alerts, described by the alert_* columns).
- `count`: how many intents / fees / exchanges / transactions / alerts.
- `amount`: integer, minor units of `currency` (fx_bought: of the bought currency).
- `fee`: integer, minor units; the PSP's fee on psp `theirs` rows.
- `sold_currency`: fx_bought only: the currency sold for it.
- `status`: alerts only: OPEN or ACKNOWLEDGED.
- `alert_id`, `subject`, `intent_id`, `occurrences`, `created_at`, `last_seen_at`: alerts `oldest`
  rows only; times are ISO 8601 in UTC.

Text cells that begin with `=`, `+`, `-`, `@`, a tab or a carriage return get a leading `'`, so a
spreadsheet shows a hostile subject or code as text instead of evaluating it as a formula (OWASP "CSV
injection"); numbers are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

from pm_shared.reconciliation.reports.model import Report

COLUMNS = (
    "period",
    "section",
    "currency",
    "key",
    "item",
    "count",
    "amount",
    "fee",
    "sold_currency",
    "status",
    "alert_id",
    "subject",
    "intent_id",
    "occurrences",
    "created_at",
    "last_seen_at",
)

Row = dict[str, str | int | None]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(report: Report) -> str:
    """The report as CSV text (COLUMNS; see the module's docstring for what each holds)."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in (*_money_rows(report), *_alert_rows(report)):
        writer.writerow({column: _cell({"period": report.period, **row}.get(column)) for column in COLUMNS})
    return out.getvalue()


def _money_rows(report: Report) -> Iterator[Row]:
    for v in report.volumes:
        yield _row("volume", v.currency, v.intent_type, "settled", count=v.count, amount=v.amount)
    for r in report.revenue:
        yield _row("fee", r.currency, r.intent_type, r.source, count=r.count, amount=r.amount)
    for b in report.fx_bought:
        row = _row("fx_bought", b.currency, b.intent_type, "bought", count=b.count, amount=b.amount)
        yield {**row, "sold_currency": b.sold_currency}
    for f in report.failures:
        yield _row("failure", f.currency, f.failure_code, "failed", count=f.count, amount=f.amount)
    for p in report.psp:
        yield _row("psp", p.currency, p.psp, "ours", count=p.settled_count, amount=p.settled_amount)
        yield {
            **_row("psp", p.currency, p.psp, "theirs", count=p.report_count, amount=p.report_amount),
            "fee": p.report_fee,
        }
        yield _row("psp", p.currency, p.psp, "missing", count=p.missing)
        yield _row("psp", p.currency, p.psp, "unknown", count=p.unknown)


def _alert_rows(report: Report) -> Iterator[Row]:
    for c in report.alert_counts:
        yield {**_row("alerts", None, c.kind, "count", count=c.count), "status": c.status}
    for a in report.open_alerts:
        yield {
            **_row("alerts", None, a.kind, "oldest"),
            "status": a.status,
            "alert_id": a.id,
            "subject": a.subject,
            "intent_id": a.intent_id,
            "occurrences": a.occurrences,
            "created_at": _utc(a.created_at),
            "last_seen_at": _utc(a.last_seen_at),
        }


def _row(
    section: str,
    currency: str | None,
    key: str,
    item: str,
    *,
    count: int | None = None,
    amount: int | None = None,
) -> Row:
    return {
        "section": section,
        "currency": currency,
        "key": key,
        "item": item,
        "count": count,
        "amount": amount,
    }


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _cell(value: str | int | None) -> str | int:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
