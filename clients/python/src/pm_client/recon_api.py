"""The HTTP contract of reconciliation (docs/api.md, "Reconciliation"): the alerts the reconciler
raises and an admin acknowledges and resolves, the sweeps an admin asks for and their runs, and the
daily and weekly reports. Admin keys only.

Ids of ledger objects (transfers, accounts) and every other u128 or u64 of a ledger transfer are
decimal strings: a JSON number cannot carry them exactly everywhere. An alert's and a run's own ids
are PostgreSQL bigints, JSON integers like every other row id of the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec

from pm_client.api import TEXT_PATTERN, Out, Struct

# --- alerts ---------------------------------------------------------------------------------------

AlertStatus = Literal["OPEN", "ACKNOWLEDGED", "RESOLVED"]
AlertStatusFilter = Literal["UNRESOLVED", "OPEN", "ACKNOWLEDGED", "RESOLVED", "ALL"]
"""What `GET /v1/admin/reconciliation/alerts?status=` takes: one status, UNRESOLVED (OPEN and
ACKNOWLEDGED, the default) or ALL."""
ALERT_STATUS_FILTERS: tuple[str, ...] = get_args(AlertStatusFilter)
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,63}(?!\n)$"
AlertKind = Annotated[
    str,
    msgspec.Meta(
        pattern=KIND_PATTERN,
        description="An alert kind: 1–64 of a-z 0-9 _, a letter first (`posted_zero`, `orphan_transfer`).",
    ),
]
NOTE_MAX = 1000
Note = Annotated[str, msgspec.Meta(max_length=NOTE_MAX, pattern=TEXT_PATTERN)]


class Alert(Out, kw_only=True):
    """One finding, kept one row per (kind, subject, period): OPEN → ACKNOWLEDGED → RESOLVED. A check
    that finds it again reopens it (`occurrences` counts the runs that saw it)."""

    id: int
    kind: str
    subject: str | None
    """What it is about: an intent id, a transfer or account id, a ledger, `psp:reference`; null for
    the orchestrator's dead-letter alerts (their `stream` and `entryId` say what)."""
    period: str | None
    """`continuous` for per-intent checks, else the window a sweep covered."""
    intent_id: str | None
    status: AlertStatus
    occurrences: int
    detail: dict[str, Any]
    """What the check saw (its shape depends on `kind`); ledger ids in it are decimal strings."""
    created_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    """`reconciler` when a later check passed, else the admin key (or operator) that resolved it."""
    note: str | None = None
    stream: str | None = None
    entry_id: str | None = None


class AlertPageLinks(Out, kw_only=True):
    next: str | None = None
    """The next (older) page, with the same filters; null on the last page."""


class AlertPage(Out, kw_only=True):
    """Newest first. `nextCursor` is what to pass as `before` for the next page (the smallest id
    shown); `links.next` is that page's path and query, ready to sign and send."""

    items: list[Alert]
    next_cursor: str | None = None
    links: AlertPageLinks = msgspec.field(default_factory=AlertPageLinks)


class AlertAction(Out, kw_only=True):
    """One entry of an alert's log: opened, reopened, acknowledged, resolved, repaired."""

    action: str
    actor: str
    note: str | None = None
    at: datetime


class RepairTransfer(Out, kw_only=True):
    """A correcting ledger transfer, field for field as the ledger-writer will send it."""

    id: str
    debit_account_id: str = "0"
    credit_account_id: str = "0"
    amount: str = "0"
    pending_id: str = "0"
    user_data_128: str = "0"
    user_data_64: str = "0"
    user_data_32: int = 0
    timeout: int = 0
    ledger: int = 0
    code: int = 0
    flags: int = 0


class Repair(Out, kw_only=True):
    """The correcting transfers proposed for an alert; nothing moves until an operator applies them
    (`pm recon repair ALERT --yes`)."""

    id: int
    status: Literal["PROPOSED", "APPLYING", "APPLIED"]
    intent_id: str | None = None
    transfers: list[RepairTransfer]
    proposed_at: datetime
    applied_by: str | None = None
    applied_at: datetime | None = None


class AlertDetail(Alert, kw_only=True):
    """`GET /v1/admin/reconciliation/alerts/{alertId}`: the alert, its log, its repair if proposed."""

    history: list[AlertAction] = []
    repair: Repair | None = None


class AlertNote(Struct, kw_only=True):
    """The body of `…/ack` and `…/resolve`, which may also be empty: a note kept on the alert and in
    its log (the alert's note is replaced only when one is given)."""

    note: Note | None = None


# --- runs -----------------------------------------------------------------------------------------

Sweep = Literal["verify", "orphans", "projection", "totals", "settlement"]
SWEEPS: tuple[str, ...] = get_args(Sweep)
Day = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?!\n)$",
        description="A UTC day, YYYY-MM-DD: a real one, not in the future, at most ten years ago.",
    ),
]


class RequestRun(Struct, kw_only=True):
    """`POST /v1/admin/reconciliation/runs`: run a sweep now, over one UTC day (today by default).
    The state sweeps (`projection`, `totals`) look at the state now whatever the day."""

    sweep: Sweep
    day: Day | None = None


class RunLinks(Out, kw_only=True):
    runs: str
    """Where the run shows up once a reconciler takes it: the sweep's recent runs."""


class RunRequested(Out, kw_only=True):
    """A request waiting for a reconciler replica (202): it runs as `period` in the sweep's runs."""

    id: str
    sweep: str
    day: str
    period: str
    """The run's period in `GET /v1/admin/reconciliation/runs`: `<day>T00:00:00Z/86400@<id>`."""
    requested_by: str
    links: RunLinks


class Run(Out, kw_only=True):
    """One sweep of one period, held by one reconciler replica at a time."""

    id: int
    sweep: str
    period: str
    status: Literal["RUNNING", "DONE"]
    owner: str
    """The replica that holds (or last held) it."""
    attempts: int
    """How often it was claimed: above 1 when a replica resumed it from `checkpoint`."""
    checkpoint: dict[str, Any]
    stats: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None = None
    lease_until: datetime


# --- reports --------------------------------------------------------------------------------------

ReportPeriod = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-(?:[0-9]{2}-[0-9]{2}|W[0-9]{2})(?!\n)$",
        description="A UTC day `2026-12-07` or an ISO 8601 week `2026-W49` (Monday to Sunday): a real one.",
    ),
]
REPORT_MEDIA_TYPES = ("application/json", "text/csv", "text/html")
"""What `GET /v1/admin/reconciliation/reports/{period}` answers in, by `Accept` (JSON otherwise)."""


class ReportVolume(Out, kw_only=True):
    """Intents of one type and currency that reached SETTLED in the period."""

    currency: str
    intent_type: str
    count: int
    amount: int


class ReportRevenue(Out, kw_only=True):
    """What the house earned in one currency on one intent type: `fee` (fee-rule fees; `count` fees)
    or `fx_spread` (an exchange's spread, in the sold currency; `count` exchanges)."""

    currency: str
    source: Literal["fee", "fx_spread"]
    intent_type: str
    count: int
    amount: int


class ReportFxBought(Out, kw_only=True):
    """What the period's settled exchanges bought in `currency` for `soldCurrency`."""

    currency: str
    sold_currency: str
    intent_type: str
    count: int
    amount: int


class ReportFailure(Out, kw_only=True):
    """Intents that reached FAILED in the period with one failure code, in one currency."""

    currency: str
    failure_code: str
    count: int
    amount: int


class ReportPspTotals(Out, kw_only=True):
    """One PSP's settled totals in one currency: ours against its settlement reports (from the
    settlement sweeps of the period's days; `matches` when counts and amounts agree and nothing is
    missing on either side)."""

    psp: str
    currency: str
    settled_count: int
    settled_amount: int
    report_count: int
    report_amount: int
    report_fee: int
    missing: int = 0
    unknown: int = 0
    matches: bool


class ReportAlertCount(Out, kw_only=True):
    """How many unresolved alerts of one kind are in one status (OPEN or ACKNOWLEDGED)."""

    kind: str
    status: str
    count: int


class ReportOpenAlert(Out, kw_only=True):
    id: int
    kind: str
    subject: str | None
    intent_id: str | None
    occurrences: int
    status: str
    created_at: datetime
    last_seen_at: datetime


class Report(Out, kw_only=True):
    """A day's or week's reconciliation report per currency; every amount in minor units of its row's
    `currency`. The money sections count the intents that reached a state within [start, end); the
    alert sections are the alerts unresolved when the report was made (`generatedAt`)."""

    period: str
    start: datetime
    end: datetime
    generated_at: datetime
    volumes: list[ReportVolume] = []
    revenue: list[ReportRevenue] = []
    fx_bought: list[ReportFxBought] = []
    failures: list[ReportFailure] = []
    psp: list[ReportPspTotals] = []
    alert_counts: list[ReportAlertCount] = []
    open_alerts: list[ReportOpenAlert] = []
    """The oldest unresolved alerts, at most 50 (`openAlertTotal` counts them all)."""
    open_alert_total: int = 0
