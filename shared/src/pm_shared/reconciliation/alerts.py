"""Reconciliation alerts (`pm.reconciliation_alert`): what a check found, kept one row per (kind,
subject, period) with a lifecycle OPEN → ACKNOWLEDGED → RESOLVED and an action log.

`record` writes one check run's findings in the caller's transaction:

- a finding with no row opens one; with a RESOLVED row it reopens that row (never a second row);
  `occurrences` counts the runs that saw it, so a run repeated after a crash counts once;
- every alert of the check's kinds and scope that this run did not find again is resolved by the
  reconciler (the check passed);
- a run that would open or reopen more than `cap` alerts opens none and resolves none (a partial run
  would resolve what it left out): it raises one `alert_cap` alert instead.

Operators acknowledge and resolve with `acknowledge` / `resolve`; each change is logged in
`pm.reconciliation_alert_action` with who made it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import msgspec
from prometheus_client import Counter

from pm_shared.db import Conn
from pm_shared.reconciliation import kinds, queries
from pm_shared.reconciliation.verify import Finding

RAISED = Counter(
    "pm_reconciliation_alerts_total",
    "Alerts raised for an operator (pm.reconciliation_alert rows), by kind.",
    ["kind"],
)
"""Counted by whoever raises one (the orchestrator, adapter-ipps): PMReconciliationAlert fires on it."""

RECONCILER = "reconciler"
STATUSES = ("OPEN", "ACKNOWLEDGED", "RESOLVED")
DEFAULT_CAP = 200


class AlertNotFoundError(LookupError):
    """No alert has this id."""


class AlertStateError(ValueError):
    """The alert is not in a state that allows this (acknowledging a resolved one, say)."""

    def __init__(self, alert: Alert, action: str) -> None:
        super().__init__(f"alert {alert.id} is {alert.status}: it cannot be {action}")
        self.alert = alert


class Alert(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An alert as the admin API and `pm recon alerts` show it."""

    id: int
    kind: str
    subject: str | None
    period: str | None
    intent_id: str | None
    status: str
    occurrences: int
    detail: dict[str, object]
    created_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str | None = None
    stream: str | None = None
    entry_id: str | None = None


_detail = msgspec.json.Decoder(dict[str, object])


def alert_of(row: asyncpg.Record) -> Alert:
    raw = row["detail"]
    return Alert(
        id=row["id"],
        kind=row["kind"],
        subject=row["subject"],
        period=row["period"],
        intent_id=row["intent_id"],
        status=row["status"],
        occurrences=row["occurrences"],
        detail=_detail.decode(raw) if isinstance(raw, str | bytes) else dict(raw),
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        note=row["note"],
        stream=row["stream"],
        entry_id=row["entry_id"],
    )


@dataclass
class Outcome:
    """What one run changed (alert ids)."""

    opened: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    capped: bool = False


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


async def _log(conn: Conn, ids: Sequence[int], action: str, actor: str, note: str | None = None) -> None:
    if ids:
        await conn.execute(queries.INSERT_ACTIONS, list(ids), action, actor, note, "{}")


async def record(
    conn: Conn,
    findings: Sequence[Finding],
    *,
    check: str,
    period: str,
    kinds_checked: Collection[str],
    subjects: Sequence[str] | None,
    run: str,
    cap: int = DEFAULT_CAP,
) -> Outcome:
    """Write one run of `check` over `period`: `findings`, and the passing of every alert of
    `kinds_checked` (about `subjects`; None: all of the period) it did not find. Call inside a
    transaction."""
    unique: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.kind, finding.subject), finding)
    keys = list(unique)
    known = {
        (r["kind"], r["subject"]): r
        for r in await conn.fetch(
            queries.LOCK_KNOWN_ALERTS, period, [k for k, _ in keys], [s for _, s in keys]
        )
    }
    to_open = [k for k in keys if k not in known or known[k]["status"] == "RESOLVED"]
    out = Outcome()
    if len(to_open) > cap:
        sample = [f"{kind} {subject}" for kind, subject in to_open[:20]]
        meta = Finding(
            kinds.ALERT_CAP, check, None, {"wouldOpen": len(to_open), "cap": cap, "sample": sample}
        )
        capped = await record(
            conn, [meta], check=check, period=period, kinds_checked=(), subjects=(), run=run, cap=1
        )
        capped.capped = True
        return capped
    for key, finding in unique.items():
        row = known.get(key)
        if row is None:
            alert_id = await conn.fetchval(
                queries.INSERT_ALERT,
                finding.kind,
                finding.subject,
                period,
                finding.intent_id,
                _json(finding.detail),
                run,
            )
            if alert_id is not None:
                out.opened.append(alert_id)
                continue
            row = await conn.fetchrow(queries.SELECT_ALERT_ID, finding.kind, finding.subject, period)
            assert row is not None  # another check opened it meanwhile; alerts are never deleted
        await conn.execute(queries.SEEN_AGAIN, row["id"], _json(finding.detail), run)
        (out.reopened if row["status"] == "RESOLVED" else out.seen).append(row["id"])
    out.resolved = await resolve_passed(
        conn, period=period, kinds_checked=kinds_checked, subjects=subjects, found=keys, check=check
    )
    await _log(conn, out.opened, "opened", RECONCILER)
    await _log(conn, out.reopened, "reopened", RECONCILER)
    return out


async def resolve_passed(
    conn: Conn,
    *,
    period: str,
    kinds_checked: Collection[str],
    subjects: Sequence[str] | None,
    found: Collection[tuple[str, str]],
    check: str | None = None,
) -> list[int]:
    """Resolve the alerts of `kinds_checked` in `period` (about `subjects`; None: all) whose (kind,
    subject) is not in `found`: the check that raised them passed. With `check`, also that check's
    `alert_cap` alert. Returns the ids resolved."""
    keys = [f"{kind} {subject}" for kind, subject in found]
    scope = list(subjects) if subjects is not None else None
    ids = [
        r["id"] for r in await conn.fetch(queries.RESOLVE_PASSED, period, sorted(kinds_checked), scope, keys)
    ]
    if check is not None:
        ids += [
            r["id"]
            for r in await conn.fetch(queries.RESOLVE_PASSED, period, [kinds.ALERT_CAP], [check], keys)
        ]
    await _log(conn, ids, "resolved", RECONCILER)
    return ids


async def get(conn: Conn, alert_id: int) -> Alert:
    row = await conn.fetchrow(queries.SELECT_ALERT, alert_id)
    if row is None:
        raise AlertNotFoundError(alert_id)
    return alert_of(row)


async def listing(
    conn: Conn,
    *,
    statuses: Sequence[str] = ("OPEN", "ACKNOWLEDGED"),
    kind: str | None = None,
    before: int = 0,
    limit: int = 100,
) -> list[Alert]:
    """Newest first; `before`: only alerts with a smaller id (the next page)."""
    rows = await conn.fetch(queries.SELECT_ALERTS, list(statuses), kind, before, limit)
    return [alert_of(r) for r in rows]


async def history(conn: Conn, alert_id: int) -> list[dict[str, object]]:
    return [
        {"action": r["action"], "actor": r["actor"], "note": r["note"], "at": r["at"].isoformat()}
        for r in await conn.fetch(queries.SELECT_ALERT_ACTIONS, alert_id)
    ]


async def acknowledge(conn: Conn, alert_id: int, actor: str, note: str | None = None) -> Alert:
    """OPEN → ACKNOWLEDGED (someone is on it). Raises AlertNotFoundError or AlertStateError."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.ACKNOWLEDGE, alert_id, actor, note)
        if row is None:
            raise AlertStateError(await get(conn, alert_id), "acknowledged")
        await _log(conn, [alert_id], "acknowledged", actor, note)
    return alert_of(row)


async def resolve(conn: Conn, alert_id: int, actor: str, note: str | None = None) -> Alert:
    """OPEN/ACKNOWLEDGED → RESOLVED by an operator. A check that finds it again reopens it."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.RESOLVE, alert_id, actor, note)
        if row is None:
            raise AlertStateError(await get(conn, alert_id), "resolved")
        await _log(conn, [alert_id], "resolved", actor, note)
    return alert_of(row)


async def unresolved_by_kind(conn: Conn) -> dict[str, int]:
    return {r["kind"]: r["n"] for r in await conn.fetch(queries.COUNT_UNRESOLVED_BY_KIND)}
