"""Admin routes of reconciliation (docs/api.md, "Reconciliation"), over the reconciler's library
`pm_shared.reconciliation`: alerts (a page of them, one with its log and repair, acknowledge,
resolve), sweeps asked for now and the recent runs. Admin keys only; the actor of every change is the
admin key's id.

Every parameter was checked against its declared type before a handler runs
(`pm_gateway.recon_routes`), so what reaches the library is a known status, a kind of the right
form, a bigint id. What the library refuses is a problem: an unknown alert 404 `alert_not_found`; a
move its status does not allow 409 `alert_state` (acknowledging an alert twice is one of them: the
second would rewrite who took it and when); a sweep request for a day it does not take 422
`bad_run_request`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import FieldError
from pm_client.recon_api import (
    Alert,
    AlertAction,
    AlertDetail,
    AlertNote,
    AlertPage,
    AlertPageLinks,
    Repair,
    RepairTransfer,
    RequestRun,
    Run,
    RunLinks,
    RunRequested,
)
from pm_gateway import web
from pm_gateway.auth import Caller, require_admin
from pm_gateway.problems import ProblemError
from pm_shared import messages
from pm_shared.db import Conn
from pm_shared.reconciliation import alerts, queries, requests

ALERTS_PATH = "/v1/admin/reconciliation/alerts"
RUNS_PATH = "/v1/admin/reconciliation/runs"
UNRESOLVED = ("OPEN", "ACKNOWLEDGED")
_ALERT_FIELDS = Alert.__struct_fields__
_transfers = msgspec.json.Decoder(list[messages.LedgerTransfer])
_object = msgspec.json.Decoder(dict[str, Any])


async def _admin(request: Request) -> Caller:
    caller = await web.caller(request)
    require_admin(caller)
    return caller


def _jsonb(value: object) -> bytes:
    """A jsonb column as asyncpg returns it without a codec (text), or already decoded."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode()


def alert_view(alert: alerts.Alert) -> Alert:
    """The library's alert as the API shows it (the same fields, by name)."""
    return Alert(**{name: getattr(alert, name) for name in _ALERT_FIELDS})


def repair_view(row: asyncpg.Record) -> Repair:
    """A `pm.reconciliation_repair` row; the transfers' u128 and u64 fields as decimal strings."""
    return Repair(
        id=row["id"],
        status=row["status"],
        intent_id=None if row["intent_id"] is None else str(row["intent_id"]),
        transfers=[
            RepairTransfer(
                id=str(t.id),
                debit_account_id=str(t.debit_account_id),
                credit_account_id=str(t.credit_account_id),
                amount=str(t.amount),
                pending_id=str(t.pending_id),
                user_data_128=str(t.user_data_128),
                user_data_64=str(t.user_data_64),
                user_data_32=t.user_data_32,
                timeout=t.timeout,
                ledger=t.ledger,
                code=t.code,
                flags=t.flags,
            )
            for t in _transfers.decode(_jsonb(row["transfers"]))
        ],
        proposed_at=row["proposed_at"],
        applied_by=row["applied_by"],
        applied_at=row["applied_at"],
    )


def run_view(row: asyncpg.Record) -> Run:
    return Run(
        id=row["id"],
        sweep=row["sweep"],
        period=row["period"],
        status=row["status"],
        owner=row["owner"],
        attempts=row["attempts"],
        checkpoint=_object.decode(_jsonb(row["checkpoint"])),
        stats=_object.decode(_jsonb(row["stats"])),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_until=row["lease_until"],
    )


def _not_found(alert_id: int) -> ProblemError:
    return ProblemError(404, "alert_not_found", f"no alert {alert_id}")


def _statuses(wanted: str) -> tuple[str, ...]:
    """The statuses a `status` filter stands for."""
    if wanted == "UNRESOLVED":
        return UNRESOLVED
    return alerts.STATUSES if wanted == "ALL" else (wanted,)


def _next_link(params: dict[str, Any], before: int) -> str:
    query = {"status": params["status"], "kind": params["kind"], "limit": params["limit"], "before": before}
    return f"{ALERTS_PATH}?{urlencode({k: v for k, v in query.items() if v is not None})}"


async def list_alerts(request: Request) -> Response:
    """A page of alerts, newest first; one more than asked is read to know whether a next page exists."""
    d = web.deps(request)
    params = web.inputs(request).params
    await _admin(request)
    limit: int = params["limit"]
    async with d.pool.acquire() as conn:
        found = await alerts.listing(
            conn,
            statuses=_statuses(params["status"]),
            kind=params["kind"],
            before=params["before"] or 0,
            limit=limit + 1,
        )
    items = [alert_view(a) for a in found[:limit]]
    if len(found) <= limit:
        return web.json(AlertPage(items=items))
    last = items[-1].id
    return web.json(
        AlertPage(items=items, next_cursor=str(last), links=AlertPageLinks(next=_next_link(params, last)))
    )


async def _detail(conn: Conn, alert_id: int) -> AlertDetail:
    try:
        alert = await alerts.get(conn, alert_id)
    except alerts.AlertNotFoundError:
        raise _not_found(alert_id) from None
    history = msgspec.convert(await alerts.history(conn, alert_id), list[AlertAction])
    repair = await conn.fetchrow(queries.SELECT_REPAIR, alert_id)
    return AlertDetail(
        **{name: getattr(alert, name) for name in _ALERT_FIELDS},
        history=history,
        repair=None if repair is None else repair_view(repair),
    )


async def show_alert(request: Request) -> Response:
    d = web.deps(request)
    alert_id: int = web.inputs(request).params["alert_id"]
    await _admin(request)
    async with d.pool.acquire() as conn:
        return web.json(await _detail(conn, alert_id))


async def _move(request: Request, action: str) -> Response:
    """Acknowledge or resolve the alert of the path, with the body's note, as the calling admin key."""
    d = web.deps(request)
    given = web.inputs(request)
    alert_id: int = given.params["alert_id"]
    body: AlertNote = given.body
    caller = await _admin(request)
    move = alerts.acknowledge if action == "acknowledge" else alerts.resolve
    try:
        async with d.pool.acquire() as conn:
            changed = await move(conn, alert_id, caller.key_id, body.note)
    except alerts.AlertNotFoundError:
        raise _not_found(alert_id) from None
    except alerts.AlertStateError as exc:
        raise ProblemError(409, "alert_state", str(exc)) from None
    return web.json(alert_view(changed))


async def acknowledge(request: Request) -> Response:
    return await _move(request, "acknowledge")


async def resolve(request: Request) -> Response:
    return await _move(request, "resolve")


async def request_run(request: Request) -> Response:
    """Put a sweep request on the reconcilers' list (202): a replica pops it and runs it as `period`."""
    d = web.deps(request)
    wanted: RequestRun = web.inputs(request).body
    caller = await _admin(request)
    try:
        run = requests.request(wanted.sweep, wanted.day, caller.key_id)
    except requests.RunRequestError as exc:
        path = "$.day" if wanted.sweep in requests.SWEEPS else "$.sweep"
        raise ProblemError(
            422, "bad_run_request", str(exc), errors=[FieldError(path=path, message=str(exc))]
        ) from None
    await requests.enqueue(d.redis, run)
    runs = f"{RUNS_PATH}?{urlencode({'sweep': run.sweep})}"
    answer = RunRequested(
        id=run.id,
        sweep=run.sweep,
        day=run.day,
        period=run.period,
        requested_by=run.requested_by,
        links=RunLinks(runs=runs),
    )
    return web.json(answer, 202, {"Location": runs})


async def list_runs(request: Request) -> Response:
    d = web.deps(request)
    params = web.inputs(request).params
    await _admin(request)
    async with d.pool.acquire() as conn:
        rows = await conn.fetch(queries.SELECT_RUNS, params["sweep"], params["limit"])
    return web.json([run_view(r) for r in rows])
