"""Daily and weekly reconciliation reports, per currency: settled volumes and counts by intent type,
fees and FX spread revenue, what exchanges bought, failures by code, PSP totals against their
settlement reports, and the unresolved alerts.

`build` reads a period's report from PostgreSQL as data (`Report`); `to_csv` and `to_html` render it
(a flat pivotable table in minor units; a self-contained page with SVG charts in major units);
`write` puts both in a directory as `<period>.csv` and `<period>.html`. A period is a UTC day
`2026-12-07` or an ISO week `2026-W49` (`Period.parse`).
"""

from __future__ import annotations

from pm_shared.reconciliation.reports.build import OLDEST_ALERTS, build
from pm_shared.reconciliation.reports.csv_out import COLUMNS, to_csv
from pm_shared.reconciliation.reports.files import write
from pm_shared.reconciliation.reports.html_out import to_html
from pm_shared.reconciliation.reports.model import (
    AlertCount,
    Failure,
    FxBought,
    OpenAlert,
    PspTotals,
    Report,
    Revenue,
    Volume,
)
from pm_shared.reconciliation.reports.period import Period, PeriodError

__all__ = [
    "COLUMNS",
    "OLDEST_ALERTS",
    "AlertCount",
    "Failure",
    "FxBought",
    "OpenAlert",
    "Period",
    "PeriodError",
    "PspTotals",
    "Report",
    "Revenue",
    "Volume",
    "build",
    "to_csv",
    "to_html",
    "write",
]
