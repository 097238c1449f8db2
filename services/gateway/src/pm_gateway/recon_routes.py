"""The routes of reconciliation (admin keys only): alerts, sweep requests and runs, reports, declared
as `pm_gateway.routes` declares the others. The handlers are in `pm_gateway.reconciliation` and
`pm_gateway.recon_reports`.

Their query parameters that do not fit (a status or sweep the reconciler does not have, a kind of
the wrong form, a limit or cursor out of range) are 400 with a code of their own, as on the other
list routes; a report period that is no day or ISO week is 422 `period_invalid`; an alert id that is
not a positive bigint names no alert (404 `alert_not_found`), as an intent id that is not a UUID
names no intent.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from pm_client.recon_api import (
    REPORT_MEDIA_TYPES,
    Alert,
    AlertDetail,
    AlertKind,
    AlertNote,
    AlertPage,
    AlertStatusFilter,
    Report,
    ReportPeriod,
    RequestRun,
    Run,
    RunRequested,
    Sweep,
)
from pm_gateway import recon_reports, reconciliation
from pm_gateway.cursors import BIGINT_MAX
from pm_gateway.endpoints import Endpoint, Param

TAG = "reconciliation"
LIMIT_MAX = 200
ADMIN = ("forbidden_admin",)
RowId = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]

ALERT = Param(
    "alert_id",
    "path",
    "The alert id (a positive integer); anything else names no alert (404).",
    RowId,
    required=True,
    status=404,
    code="alert_not_found",
)
STATUS = Param(
    "status",
    "query",
    "Which alerts: UNRESOLVED (OPEN and ACKNOWLEDGED, the default), OPEN, ACKNOWLEDGED, RESOLVED or ALL.",
    AlertStatusFilter,
    code="alert_status_invalid",
    default="UNRESOLVED",
)
KIND = Param(
    "kind",
    "query",
    "Only alerts of this kind (`posted_zero`, `orphan_transfer`, …); a kind no check raises finds none.",
    AlertKind,
    code="alert_kind_invalid",
)
BEFORE_MAX = 2**63 - 1
"""An alert id is a PostgreSQL bigint."""
BEFORE = Param(
    "before",
    "query",
    f"Only alerts with a smaller id: the previous page's `nextCursor` (ASCII digits, 1–{BEFORE_MAX}).",
    Annotated[int, msgspec.Meta(ge=1, le=BEFORE_MAX)],
    code="before_invalid",
)
LIMIT = Param(
    "limit",
    "query",
    f"How many, 1–{LIMIT_MAX} (default 50), ASCII digits.",
    Annotated[int, msgspec.Meta(ge=1, le=LIMIT_MAX)],
    code="limit_invalid",
    default=50,
)
SWEEP = Param("sweep", "query", "Only this sweep's runs.", Sweep, code="sweep_invalid")
PERIOD = Param(
    "period",
    "path",
    "A UTC day `2026-12-07` or an ISO week `2026-W49`; one that is no real day or week is 422.",
    ReportPeriod,
    required=True,
    status=422,
    code="period_invalid",
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/v1/admin/reconciliation/alerts",
        reconciliation.list_alerts,
        "Reconciliation alerts, newest first (unresolved by default), a page at a time.",
        None,
        {200: AlertPage},
        {403: ADMIN},
        (STATUS, KIND, BEFORE, LIMIT),
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/reconciliation/alerts/{alert_id}",
        reconciliation.show_alert,
        "One alert, its log (who opened, acknowledged, resolved, repaired it) and its proposed repair.",
        None,
        {200: AlertDetail},
        {403: ADMIN, 404: ("alert_not_found",)},
        (ALERT,),
        tag=TAG,
    ),
    Endpoint(
        "POST",
        "/v1/admin/reconciliation/alerts/{alert_id}/ack",
        reconciliation.acknowledge,
        "Acknowledge an OPEN alert (someone is on it), with an optional note; any other status is 409 "
        "`alert_state`, an ACKNOWLEDGED one included. The body may be empty.",
        AlertNote,
        {200: Alert},
        {403: ADMIN, 404: ("alert_not_found",), 409: ("alert_state",)},
        (ALERT,),
        tag=TAG,
        body_optional=True,
    ),
    Endpoint(
        "POST",
        "/v1/admin/reconciliation/alerts/{alert_id}/resolve",
        reconciliation.resolve,
        "Resolve an OPEN or ACKNOWLEDGED alert, with an optional note (a check that finds it again "
        "reopens it); a RESOLVED one is 409 `alert_state`. The body may be empty.",
        AlertNote,
        {200: Alert},
        {403: ADMIN, 404: ("alert_not_found",), 409: ("alert_state",)},
        (ALERT,),
        tag=TAG,
        body_optional=True,
    ),
    Endpoint(
        "POST",
        "/v1/admin/reconciliation/runs",
        reconciliation.request_run,
        "Ask the reconciler for a sweep of one UTC day now (202): a replica runs it as the answer's "
        "`period`, shown by GET /v1/admin/reconciliation/runs.",
        RequestRun,
        {202: RunRequested},
        {403: ADMIN, 422: ("bad_run_request",)},
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/reconciliation/runs",
        reconciliation.list_runs,
        "The sweeps' recent runs, newest first: status, holder, attempts, checkpoint and counts.",
        None,
        {200: list[Run]},
        {403: ADMIN},
        (SWEEP, LIMIT),
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/reconciliation/reports/{period}",
        recon_reports.report,
        "A day's or ISO week's reconciliation report per currency, built now: `Accept: text/csv` the "
        "CSV table, `text/html` the HTML page with charts, otherwise JSON (minor units).",
        None,
        {200: Report},
        {403: ADMIN},
        (PERIOD,),
        tag=TAG,
        alternates=REPORT_MEDIA_TYPES[1:],
    ),
)
