"""A report as one self-contained HTML page: inline CSS, inline SVG charts (`charts`), no script, no
external resource, so it can be mailed, archived or opened offline as it is.

Every value that comes from the database or the caller is escaped (`_table` escapes each cell unless it
is `Safe` markup this module made). Amounts are shown in major units with the currency's exponent
(`money.major`); the CSV keeps minor units.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from pm_shared.reconciliation.reports.charts import Bar, bar_chart
from pm_shared.reconciliation.reports.model import Failure, Report
from pm_shared.reconciliation.reports.money import major

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #d5dbe5; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
.meta, .empty { color: #5b6678; }
nav a { margin-right: .8rem; }
table { border-collapse: collapse; margin: .3rem 0 1rem; }
th, td { border-bottom: 1px solid #e3e7ee; padding: .25rem .7rem; text-align: left; vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.summary td:first-child { color: #5b6678; }
.mismatch { color: #a4262c; font-weight: 600; }
.match { color: #2d6a2d; }
svg.chart { display: block; margin: .4rem 0; }
svg.chart .bar { fill: #3b6ea5; }
svg.chart .label, svg.chart .figure { font: 12px system-ui, sans-serif; fill: #1d2430; }
svg.chart .chart-title { font: 600 13px system-ui, sans-serif; fill: #1d2430; }
section.failures svg.chart .bar, section.alerts svg.chart .bar { fill: #c0504d; }
"""


class Safe(str):
    """Markup made by this module (a chart, a link): written into a table as it is, never escaped."""


def to_html(report: Report) -> str:
    """The report as a complete HTML document (UTF-8 text)."""
    title = f"PM reconciliation report — {_period_name(report.period)}"
    body = [
        "<header>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Period: {_e(_when(report.start))} to {_e(_when(report.end))} (end excluded). '
        f"Generated {_e(_when(report.generated_at))}.</p>",
        "</header>",
        _nav(report),
        *(_currency_section(report, currency) for currency in report.currencies()),
    ]
    if not report.currencies():
        body.append('<p class="empty">No intent settled or failed in this period.</p>')
    body += [_psp_section(report), _alerts_section(report)]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def _period_name(label: str) -> str:
    return f"week {label}" if "-W" in label else f"day {label}"


def _nav(report: Report) -> str:
    links = [f'<a href="#currency-{_e(c)}">{_e(c)}</a>' for c in report.currencies()]
    links += ['<a href="#psp">PSP settlement</a>', '<a href="#alerts">Alerts</a>']
    return f"<nav>{''.join(links)}</nav>"


def _currency_section(report: Report, currency: str) -> str:
    volumes = [v for v in report.volumes if v.currency == currency]
    revenue = [r for r in report.revenue if r.currency == currency]
    bought = [b for b in report.fx_bought if b.currency == currency]
    failures = [f for f in report.failures if f.currency == currency]
    summary = [
        ("Settled intents", f"{sum(v.count for v in volumes):,}"),
        (f"Settled volume ({currency})", major(sum(v.amount for v in volumes), currency)),
        (
            f"Fees collected ({currency})",
            major(sum(r.amount for r in revenue if r.source == "fee"), currency),
        ),
        (
            f"FX spread revenue ({currency})",
            major(sum(r.amount for r in revenue if r.source == "fx_spread"), currency),
        ),
        (f"Bought by exchanges ({currency})", major(sum(b.amount for b in bought), currency)),
        ("Failed intents", f"{sum(f.count for f in failures):,}"),
        (f"Failed amount ({currency})", major(sum(f.amount for f in failures), currency)),
    ]
    volume_chart = bar_chart(
        f"Settled volume by intent type ({currency})",
        [Bar(v.intent_type, v.amount, f"{major(v.amount, currency)} {currency}") for v in volumes],
    )
    parts = [
        f'<section class="currency" id="currency-{_e(currency)}">',
        f"<h2>{_e(currency)}</h2>",
        _table(["Figure", "Value"], summary, numeric={1}, css="summary"),
        "<h3>Settled volume by intent type</h3>",
        volume_chart,
        _table(
            ["Intent type", "Count", f"Amount ({currency})"],
            [(v.intent_type, f"{v.count:,}", major(v.amount, currency)) for v in volumes],
            numeric={1, 2},
        ),
        "<h3>Fees and FX spread revenue</h3>",
        _table(
            ["Revenue", "Intent type", "Count", f"Amount ({currency})"],
            [(_SOURCES[r.source], r.intent_type, f"{r.count:,}", major(r.amount, currency)) for r in revenue],
            numeric={2, 3},
        ),
        f"<h3>Bought by exchanges (paid out of {_e(currency)} liquidity)</h3>",
        _table(
            ["Sold currency", "Intent type", "Exchanges", f"Bought ({currency})"],
            [(b.sold_currency, b.intent_type, f"{b.count:,}", major(b.amount, currency)) for b in bought],
            numeric={2, 3},
        ),
        _failures(currency, failures),
        "</section>",
    ]
    return "\n".join(parts)


def _failures(currency: str, failures: Sequence[Failure]) -> str:
    chart = bar_chart(
        f"Failures by code ({currency}, count)",
        [Bar(f.failure_code, f.count, f"{f.count:,}") for f in failures],
    )
    table = _table(
        ["Failure code", "Count", f"Amount ({currency})"],
        [(f.failure_code, f"{f.count:,}", major(f.amount, currency)) for f in failures],
        numeric={1, 2},
    )
    return "\n".join(['<section class="failures">', "<h3>Failures by code</h3>", chart, table, "</section>"])


_SOURCES = {"fee": "Fees", "fx_spread": "FX spread"}


def _psp_section(report: Report) -> str:
    rows = [
        (
            p.psp,
            p.currency,
            f"{p.settled_count:,}",
            major(p.settled_amount, p.currency),
            f"{p.report_count:,}",
            major(p.report_amount, p.currency),
            major(p.report_fee, p.currency),
            major(p.settled_amount - p.report_amount, p.currency),
            f"{p.missing:,}",
            f"{p.unknown:,}",
            Safe('<span class="match">matches</span>')
            if p.matches
            else Safe('<span class="mismatch">MISMATCH</span>'),
        )
        for p in report.psp
    ]
    headers = [
        "PSP",
        "Currency",
        "Our count",
        "Our amount",
        "Their count",
        "Their amount",
        "Their fee",
        "Difference (ours − theirs)",
        "Missing at PSP",
        "Unknown to us",
        "Result",
    ]
    return "\n".join(
        [
            '<section class="psp" id="psp">',
            "<h2>PSP settlement</h2>",
            '<p class="meta">Our settled totals against each PSP\'s settlement report; amounts in major '
            "units of the row's currency.</p>",
            _table(
                headers, rows, numeric=set(range(2, 10)), empty="No PSP settlement report for this period."
            ),
            "</section>",
        ]
    )


def _alerts_section(report: Report) -> str:
    by_kind: dict[str, dict[str, int]] = {}
    for c in report.alert_counts:
        by_kind.setdefault(c.kind, {})[c.status] = c.count
    totals = {kind: sum(statuses.values()) for kind, statuses in by_kind.items()}
    chart = bar_chart(
        "Unresolved alerts by kind", [Bar(kind, n, f"{n:,}") for kind, n in sorted(totals.items())]
    )
    counts = [
        (kind, f"{s.get('OPEN', 0):,}", f"{s.get('ACKNOWLEDGED', 0):,}", f"{totals[kind]:,}")
        for kind, s in sorted(by_kind.items())
    ]
    oldest = [
        (
            str(a.id),
            a.kind,
            a.subject or "",
            a.intent_id or "",
            f"{a.occurrences:,}",
            a.status,
            _when(a.created_at),
            _when(a.last_seen_at),
        )
        for a in report.open_alerts
    ]
    if len(oldest) < report.open_alert_total:
        shown = f" (the oldest {len(oldest):,} of {report.open_alert_total:,})"
    else:
        shown = f" (all {len(oldest):,})" if oldest else ""
    return "\n".join(
        [
            '<section class="alerts" id="alerts">',
            f"<h2>Alerts unresolved at {_e(_when(report.generated_at))}</h2>",
            chart,
            _table(
                ["Kind", "Open", "Acknowledged", "Total"],
                counts,
                numeric={1, 2, 3},
                empty="No unresolved alert.",
            ),
            f"<h3>Oldest unresolved alerts{_e(shown)}</h3>",
            _table(
                ["Id", "Kind", "Subject", "Intent", "Seen", "Status", "Opened", "Last seen"],
                oldest,
                numeric={0, 4},
            ),
            "</section>",
        ]
    )


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Collection[int] = (),
    css: str = "",
    empty: str = "None.",
) -> str:
    """An HTML table; every header and cell is escaped unless it is `Safe`. `numeric`: the columns
    aligned right. No rows: a short sentence instead of an empty table."""
    body = ["<tr>" + "".join(_td(cell, n in numeric) for n, cell in enumerate(row)) + "</tr>" for row in rows]
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th{_num(n in numeric)}>{_e(h)}</th>" for n, h in enumerate(headers))
    css_class = f' class="{_e(css)}"' if css else ""
    return f"<table{css_class}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _td(cell: str, numeric: bool) -> str:
    return f"<td{_num(numeric)}>{cell if isinstance(cell, Safe) else _e(cell)}</td>"


def _num(numeric: bool) -> str:
    return ' class="num"' if numeric else ""


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: str) -> str:
    return escape(value, quote=True)
