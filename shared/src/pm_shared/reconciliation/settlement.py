"""PSP settlement: our payments against each PSP's daily settlement report (`pm_shared.psp.settlement`).

For day D and one PSP:
- every payment the PSP finished with success on D by our clock (`pm.psp_tx_map.result_at`) whose
  intent SETTLED must be in the PSP's report of D — or of D-1: the PSP finished it before we heard —
  with the same amount, currency and status SUCCEEDED (`psp_missing`, `psp_amount_mismatch`);
- every line of the report of D must be a payment PM knows (`psp_unknown`), and one PM knows with
  success must not be reported otherwise (`psp_amount_mismatch`).
A report that cannot be fetched or read is `psp_report_unavailable`. Subjects are `<psp>:<our
reference>` (`<psp>:<their reference>` for unknown lines); the period is the day.

`Totals` (ours and theirs per PSP and currency) go into the sweep's stats, where reports read them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx

from pm_shared.db import Conn
from pm_shared.psp import settlement as reports
from pm_shared.psp.settlement import SettlementFetchError, SettlementLine, SettlementReportError
from pm_shared.reconciliation import kinds, queries
from pm_shared.reconciliation.reports.model import PspTotals
from pm_shared.reconciliation.verify import Finding


@dataclass(frozen=True)
class Psp:
    name: str
    url: str
    secret: str


@dataclass
class Checked:
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    """`<psp>:<currency>:<figure>` → value: settled_count/amount (ours), report_count/amount/fee (theirs)."""


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


async def _report(client: httpx.AsyncClient, psp: Psp, day: date) -> list[SettlementLine]:
    return await reports.fetch_report(client, psp.name, psp.url, day, secret=psp.secret)


async def check(conn: Conn, client: httpx.AsyncClient, psp: Psp, day: date) -> Checked:
    """One PSP's report of `day` against what PM recorded."""
    out = Checked()
    try:
        today = await _report(client, psp, day)
        before = await _report(client, psp, day - timedelta(days=1))
    except (SettlementFetchError, SettlementReportError) as exc:
        out.findings.append(
            Finding(kinds.PSP_REPORT_UNAVAILABLE, psp.name, None, {"day": day.isoformat(), "error": str(exc)})
        )
        return out
    start, end = _bounds(day)
    ours = await conn.fetch(queries.SELECT_PSP_SETTLED, psp.name, start, end)
    theirs = {line.merchant_reference: line for line in (*before, *today)}
    stats: dict[str, int] = defaultdict(int)
    for row in ours:
        key = f"{psp.name}:{row['currency'].strip()}"
        stats[f"{key}:settled_count"] += 1
        stats[f"{key}:settled_amount"] += row["amount"]
        line = theirs.get(row["idempotency_key"])
        subject = f"{psp.name}:{row['idempotency_key']}"
        if line is None:
            stats[f"{key}:missing"] += 1
            out.findings.append(
                Finding(
                    kinds.PSP_MISSING,
                    subject,
                    row["intent_id"],
                    {"amount": row["amount"], "day": day.isoformat()},
                )
            )
        elif (line.amount, line.currency, line.status) != (
            row["amount"],
            row["currency"].strip(),
            "SUCCEEDED",
        ):
            out.findings.append(_differs(subject, row["intent_id"], line, row["amount"], "SUCCEEDED"))
    known = {
        r["idempotency_key"]: r
        for r in await conn.fetch(
            queries.SELECT_PSP_KNOWN, psp.name, [line.merchant_reference for line in today]
        )
    }
    for line in today:
        key = f"{psp.name}:{line.currency}"
        stats[f"{key}:report_count"] += 1
        stats[f"{key}:report_amount"] += line.amount
        stats[f"{key}:report_fee"] += line.fee
        mine = known.get(line.merchant_reference)
        if mine is None:
            stats[f"{key}:unknown"] += 1
            out.findings.append(
                Finding(
                    kinds.PSP_UNKNOWN,
                    f"{psp.name}:{line.psp_reference}",
                    None,
                    {
                        "merchantReference": line.merchant_reference,
                        "amount": line.amount,
                        "status": line.status,
                    },
                )
            )
        elif mine["status"] == "SUCCEEDED" and line.status != "SUCCEEDED":
            subject = f"{psp.name}:{line.merchant_reference}"
            if all(f.subject != subject for f in out.findings):
                out.findings.append(_differs(subject, mine["intent_id"], line, mine["amount"], "SUCCEEDED"))
    out.stats = dict(stats)
    return out


def _differs(subject: str, intent_id: str, line: SettlementLine, amount: int, status: str) -> Finding:
    return Finding(
        kinds.PSP_AMOUNT_MISMATCH,
        subject,
        intent_id,
        {
            "ours": {"amount": amount, "status": status},
            "theirs": {"amount": line.amount, "currency": line.currency, "status": line.status},
        },
    )


async def psp_totals(conn: Conn, first_day: date, last_day: date) -> list[PspTotals]:
    """Per PSP and currency, ours against theirs over the days: the sums of each day's newest finished
    settlement sweep (days not swept count nothing)."""
    sums: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = await conn.fetch(queries.SELECT_SETTLEMENT_STATS, first_day.isoformat(), last_day.isoformat())
    for row in rows:
        raw = row["stats"]
        stats = json.loads(raw) if isinstance(raw, str) else dict(raw)
        for name, value in stats.items():
            parts = name.split(":")
            if len(parts) == 3:
                sums[(parts[0], parts[1])][parts[2]] += int(value)
    return [
        PspTotals(
            psp=psp,
            currency=currency,
            settled_count=figures["settled_count"],
            settled_amount=figures["settled_amount"],
            report_count=figures["report_count"],
            report_amount=figures["report_amount"],
            report_fee=figures["report_fee"],
            missing=figures["missing"],
            unknown=figures["unknown"],
        )
        for (psp, currency), figures in sorted(sums.items())
    ]
