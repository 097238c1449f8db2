"""The reconciliation admin API against the real gateway, PostgreSQL and Redis: alerts written as the
reconciler writes them (SQL into `pm.reconciliation_alert`, one kind of this test's own so the
session's other alerts never count), listed, filtered and paged; acknowledged then resolved with
the action log; the refusals (409 on a move the status does not allow, 404, 400, 422, 403), each of
which changes nothing; sweep requests put on the reconcilers' Redis list; the runs; and the reports
in each media type `Accept` can ask for."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from pm_client import recon_api
from pm_gateway import openapi
from pm_shared.db import Pool
from pm_shared.reconciliation import alerts, reports, requests
from pm_tools.testing.gateway import Gateway

ALERTS = "/v1/admin/reconciliation/alerts"
RUNS = "/v1/admin/reconciliation/runs"
U128 = 2**128 - 1
INSERT_ALERT = """
INSERT INTO pm.reconciliation_alert (
    kind, subject, period, intent_id, detail, status,
    resolved_at, resolved_by, acknowledged_at, acknowledged_by
)
VALUES (
    $1, $2, $3, $4, $5::jsonb, $6,
    CASE WHEN $6 = 'RESOLVED' THEN now() END, CASE WHEN $6 = 'RESOLVED' THEN 'reconciler' END,
    CASE WHEN $6 = 'ACKNOWLEDGED' THEN now() END, CASE WHEN $6 = 'ACKNOWLEDGED' THEN 'ops' END
)
RETURNING id
"""


def _kind() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


async def _alert(
    pool: Pool, kind: str, *, status: str = "OPEN", subject: str | None = None, period: str = "continuous"
) -> int:
    """An alert as `alerts.record` leaves it (with its `opened` action), in `status`."""
    async with pool.acquire() as conn, conn.transaction():
        alert_id: int = await conn.fetchval(
            INSERT_ALERT,
            kind,
            subject or str(uuid.uuid4()),
            period,
            str(uuid.uuid4()),
            json.dumps({"legs": [{"leg": "main", "id": str(U128)}]}),
            status,
        )
        await conn.execute(
            "INSERT INTO pm.reconciliation_alert_action (alert_id, action, actor)"
            " VALUES ($1, 'opened', 'reconciler')",
            alert_id,
        )
    return alert_id


async def _row(pool: Pool, alert_id: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, note, acknowledged_by, resolved_by, "
            "(SELECT count(*) FROM pm.reconciliation_alert_action WHERE alert_id = $1) AS actions "
            "FROM pm.reconciliation_alert WHERE id = $1",
            alert_id,
        )
    assert row is not None
    return dict(row)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem


async def _get(gateway: Gateway, path: str) -> httpx.Response:
    return await gateway.send("GET", path, key=gateway.admin)


# --- listing --------------------------------------------------------------------------------------


async def test_alerts_are_listed_newest_first_unresolved_by_default_and_filtered(
    gateway: Gateway, db_pool: Pool
) -> None:
    kind, other = _kind(), _kind()
    opened = [await _alert(db_pool, kind) for _ in range(2)]
    acked = await _alert(db_pool, kind, status="ACKNOWLEDGED")
    resolved = await _alert(db_pool, kind, status="RESOLVED")
    await _alert(db_pool, other)

    def ids(response: httpx.Response) -> list[int]:
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["items"]]

    assert ids(await _get(gateway, f"{ALERTS}?kind={kind}")) == [acked, *reversed(opened)]
    assert ids(await _get(gateway, f"{ALERTS}?kind={kind}&status=UNRESOLVED")) == [acked, *reversed(opened)]
    assert ids(await _get(gateway, f"{ALERTS}?kind={kind}&status=ALL")) == [
        resolved,
        acked,
        *reversed(opened),
    ]
    assert ids(await _get(gateway, f"{ALERTS}?kind={kind}&status=OPEN")) == list(reversed(opened))
    assert ids(await _get(gateway, f"{ALERTS}?kind={kind}&status=ACKNOWLEDGED")) == [acked]
    assert ids(await _get(gateway, f"{ALERTS}?kind={kind}&status=RESOLVED")) == [resolved]
    assert ids(await _get(gateway, f"{ALERTS}?kind=no_such_kind_{kind}")) == []

    page = (await _get(gateway, f"{ALERTS}?kind={kind}&status=RESOLVED")).json()
    shown = page["items"][0]
    # camelCase, the ledger ids in `detail` as the reconciler wrote them (strings).
    assert (shown["kind"], shown["status"], shown["resolvedBy"]) == (kind, "RESOLVED", "reconciler")
    assert {"intentId", "lastSeenAt", "createdAt", "occurrences", "period", "subject"} <= set(shown)
    assert shown["detail"] == {"legs": [{"leg": "main", "id": str(U128)}]}
    assert page["nextCursor"] is None and page["links"]["next"] is None


async def test_alerts_are_paged_with_a_before_cursor_and_a_next_link(gateway: Gateway, db_pool: Pool) -> None:
    kind = _kind()
    made = [await _alert(db_pool, kind) for _ in range(5)]
    newest_first = list(reversed(made))
    seen: list[int] = []
    path: str | None = f"{ALERTS}?kind={kind}&limit=2"
    pages = 0
    while path is not None:
        response = await _get(gateway, path)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [a["id"] for a in page["items"]]
        pages += 1
        if page["links"]["next"] is not None:
            assert page["nextCursor"] == str(page["items"][-1]["id"])
            assert f"before={page['nextCursor']}" in page["links"]["next"]
        path = page["links"]["next"]
    assert (seen, pages) == (newest_first, 3)
    # `before` by hand: only smaller ids.
    after = await _get(gateway, f"{ALERTS}?kind={kind}&before={newest_first[1]}&limit=200")
    assert [a["id"] for a in after.json()["items"]] == newest_first[2:]
    largest = await _get(gateway, f"{ALERTS}?kind={kind}&before={2**63 - 1}&limit=200")
    assert [a["id"] for a in largest.json()["items"]] == newest_first


# --- one alert: detail, acknowledge, resolve ------------------------------------------------------


async def test_an_alert_is_acknowledged_then_resolved_and_its_log_says_who(
    gateway: Gateway, db_pool: Pool
) -> None:
    alert_id = await _alert(db_pool, _kind())
    admin = gateway.admin

    acked = await gateway.send("POST", f"{ALERTS}/{alert_id}/ack", {"note": "looking into it"}, key=admin)
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["status"], body["acknowledgedBy"], body["note"]) == (
        "ACKNOWLEDGED",
        admin.key_id,
        "looking into it",
    )
    assert body["acknowledgedAt"] is not None and body["resolvedAt"] is None

    # Acknowledging again is a conflict, not a silent success: it would rewrite who took it and when.
    again = await gateway.send("POST", f"{ALERTS}/{alert_id}/ack", key=admin)
    assert "ACKNOWLEDGED" in _problem(again, 409, "alert_state")["detail"]

    resolved = await gateway.send("POST", f"{ALERTS}/{alert_id}/resolve", key=admin)  # no body at all
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["status"], body["resolvedBy"], body["note"]) == ("RESOLVED", admin.key_id, "looking into it")
    assert body["acknowledgedBy"] == admin.key_id

    for action in ("resolve", "ack"):
        refused = await gateway.send("POST", f"{ALERTS}/{alert_id}/{action}", {"note": "x"}, key=admin)
        assert "RESOLVED" in _problem(refused, 409, "alert_state")["detail"]

    shown = await _get(gateway, f"{ALERTS}/{alert_id}")
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    assert (detail["id"], detail["status"], detail["repair"]) == (alert_id, "RESOLVED", None)
    assert [(h["action"], h["actor"], h["note"]) for h in detail["history"]] == [
        ("opened", "reconciler", None),
        ("acknowledged", admin.key_id, "looking into it"),
        ("resolved", admin.key_id, None),
    ]
    assert (await _row(db_pool, alert_id))["actions"] == 3  # the refusals logged nothing


async def test_an_open_alert_resolves_directly_and_then_leaves_the_default_list(
    gateway: Gateway, db_pool: Pool
) -> None:
    kind = _kind()
    alert_id = await _alert(db_pool, kind)
    resolved = await gateway.send(
        "POST", f"{ALERTS}/{alert_id}/resolve", {"note": "known"}, key=gateway.admin
    )
    assert (resolved.status_code, resolved.json()["status"]) == (200, "RESOLVED")
    assert (await _get(gateway, f"{ALERTS}?kind={kind}")).json()["items"] == []


async def test_an_alert_shows_its_proposed_repair_with_ledger_numbers_as_strings(
    gateway: Gateway, db_pool: Pool
) -> None:
    alert_id = await _alert(
        db_pool, "posted_zero", subject=str(uuid.uuid4()), period=f"test-{uuid.uuid4().hex}"
    )
    intent_id = uuid.uuid4()
    transfer = {
        "id": U128,
        "debit_account_id": U128 - 1,
        "credit_account_id": 2**100,
        "amount": 10_000,
        "user_data_128": intent_id.int,
        "user_data_64": 2**63 + 5,
        "ledger": 764,
        "code": 9000,
        "flags": 1,
    }
    async with db_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO pm.reconciliation_repair (alert_id, intent_id, transfers)"
            " VALUES ($1, $2, $3::jsonb)",
            alert_id,
            intent_id,
            json.dumps([transfer]),
        )
    shown = await _get(gateway, f"{ALERTS}/{alert_id}")
    assert shown.status_code == 200, shown.text
    repair = shown.json()["repair"]
    assert (repair["status"], repair["intentId"], repair["appliedAt"]) == ("PROPOSED", str(intent_id), None)
    [sent] = repair["transfers"]
    assert sent == {
        "id": str(U128),
        "debitAccountId": str(U128 - 1),
        "creditAccountId": str(2**100),
        "amount": "10000",
        "pendingId": "0",
        "userData128": str(intent_id.int),
        "userData64": str(2**63 + 5),
        "userData32": 0,
        "timeout": 0,
        "ledger": 764,
        "code": 9000,
        "flags": 1,
    }


# --- refusals: each one changes nothing -----------------------------------------------------------


async def test_unknown_and_malformed_alert_ids_name_no_alert(gateway: Gateway, db_pool: Pool) -> None:
    async with db_pool.acquire() as conn:
        unknown = (await conn.fetchval("SELECT coalesce(max(id), 0) FROM pm.reconciliation_alert")) + 1000
    for given in (str(unknown), "0", "abc", "-1", "1.5", str(2**63 - 1), str(2**63), "99999999999999999999"):
        _problem(await _get(gateway, f"{ALERTS}/{given}"), 404, "alert_not_found")
        for action in ("ack", "resolve"):
            sent = await gateway.send("POST", f"{ALERTS}/{given}/{action}", key=gateway.admin)
            _problem(sent, 404, "alert_not_found")


async def test_a_bad_note_a_user_key_or_a_stray_body_change_nothing(gateway: Gateway, db_pool: Pool) -> None:
    alert_id = await _alert(db_pool, _kind())
    before = await _row(db_pool, alert_id)
    ack = f"{ALERTS}/{alert_id}/ack"
    _problem(
        await gateway.send("POST", ack, {"note": "x" * 1001}, key=gateway.admin), 422, "validation_failed"
    )
    _problem(
        await gateway.send("POST", ack, {"note": "a\u0000b"}, key=gateway.admin), 422, "validation_failed"
    )
    _problem(
        await gateway.send("POST", ack, {"status": "RESOLVED"}, key=gateway.admin), 422, "validation_failed"
    )
    _problem(await gateway.send("POST", ack, b"{not json", key=gateway.admin), 400, "malformed_json")
    _problem(await gateway.send("POST", ack, {"note": "mine"}), 403, "forbidden_admin")  # the user key
    _problem(await gateway.send("GET", f"{ALERTS}/{alert_id}"), 403, "forbidden_admin")
    _problem(await gateway.send("GET", ALERTS), 403, "forbidden_admin")
    _problem(
        await gateway.send("GET", f"{ALERTS}/{alert_id}", b"{}", key=gateway.admin), 400, "body_unexpected"
    )
    assert await _row(db_pool, alert_id) == before
    # The longest note there may be is taken.
    taken = await gateway.send("POST", ack, {"note": "x" * 1000}, key=gateway.admin)
    assert (taken.status_code, taken.json()["note"]) == (200, "x" * 1000)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("status=BOGUS", "alert_status_invalid"),
        ("status=open", "alert_status_invalid"),
        ("status=OPEN&status=ALL", "alert_status_invalid"),
        ("kind=Posted-Zero", "alert_kind_invalid"),
        ("kind=", "alert_kind_invalid"),
        ("kind=" + "a" * 65, "alert_kind_invalid"),
        ("limit=0", "limit_invalid"),
        ("limit=201", "limit_invalid"),
        ("limit=ten", "limit_invalid"),
        ("before=0", "before_invalid"),
        ("before=-5", "before_invalid"),
        ("before=9223372036854775808", "before_invalid"),  # beyond a bigint
        ("before=9223372036854775808", "before_invalid"),
    ],
)
async def test_bad_alert_list_parameters_are_400_with_a_code(gateway: Gateway, query: str, code: str) -> None:
    problem = _problem(await _get(gateway, f"{ALERTS}?{query}"), 400, code)
    assert problem["errors"][0]["path"].startswith("query.")


@pytest.mark.parametrize(
    ("query", "code"),
    [("sweep=nope", "sweep_invalid"), ("limit=0", "limit_invalid"), ("limit=x", "limit_invalid")],
)
async def test_bad_run_list_parameters_are_400_with_a_code(gateway: Gateway, query: str, code: str) -> None:
    _problem(await _get(gateway, f"{RUNS}?{query}"), 400, code)


# --- runs -----------------------------------------------------------------------------------------


@pytest.fixture
async def asked(redis: Redis, gateway: Gateway) -> AsyncIterator[Redis]:
    """The reconcilers' request list, with this test's requests (by its admin key) taken off after."""
    yield redis
    for raw in await redis.lrange(requests.REQUESTS_KEY, 0, -1):
        text = raw.decode() if isinstance(raw, bytes) else raw  # JSON: UTF-8, the same bytes again
        if requests.decode(text.encode()).requested_by == gateway.admin.key_id:
            await redis.lrem(requests.REQUESTS_KEY, 0, text)


async def _queued(redis: Redis, gateway: Gateway) -> list[requests.RunRequest]:
    found = [requests.decode(raw) for raw in await redis.lrange(requests.REQUESTS_KEY, 0, -1)]
    return [r for r in found if r.requested_by == gateway.admin.key_id]


async def test_a_sweep_request_goes_on_the_reconcilers_list(gateway: Gateway, asked: Redis) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    answer = await gateway.send("POST", RUNS, {"sweep": "orphans", "day": yesterday}, key=gateway.admin)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert answer.headers["location"] == f"{RUNS}?sweep=orphans" == body["links"]["runs"]
    assert (body["sweep"], body["day"], body["requestedBy"]) == ("orphans", yesterday, gateway.admin.key_id)
    assert body["period"] == f"{yesterday}T00:00:00Z/86400@{body['id']}"
    [queued] = await _queued(asked, gateway)
    assert (queued.id, queued.sweep, queued.day, queued.period) == (
        body["id"],
        "orphans",
        yesterday,
        body["period"],
    )

    today = await gateway.send("POST", RUNS, {"sweep": "totals"}, key=gateway.admin)
    assert today.status_code == 202, today.text
    assert today.json()["day"] == datetime.now(UTC).date().isoformat()
    assert [r.sweep for r in await _queued(asked, gateway)] == ["orphans", "totals"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"sweep": "verify", "day": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()},
            "bad_run_request",
        ),
        ({"sweep": "verify", "day": "2026-02-30"}, "bad_run_request"),
        ({"sweep": "verify", "day": "1999-01-01"}, "bad_run_request"),
        ({"sweep": "verify", "day": "2026-1-1"}, "validation_failed"),
        ({"sweep": "everything"}, "validation_failed"),
        ({"day": "2026-01-01"}, "validation_failed"),
        ({"sweep": "verify", "owner": "me"}, "validation_failed"),
    ],
)
async def test_a_bad_sweep_request_is_422_and_queues_nothing(
    gateway: Gateway, asked: Redis, body: dict[str, str], code: str
) -> None:
    _problem(await gateway.send("POST", RUNS, body, key=gateway.admin), 422, code)
    _problem(await gateway.send("POST", RUNS, {"sweep": "verify"}), 403, "forbidden_admin")
    assert await _queued(asked, gateway) == []


async def test_runs_are_listed_newest_first_with_their_checkpoint_and_counts(
    gateway: Gateway, db_pool: Pool
) -> None:
    tag = uuid.uuid4().hex
    async with db_pool.acquire() as conn:
        done = await conn.fetchval(
            "INSERT INTO pm.reconciliation_run (sweep, period, status, owner, lease_until, attempts,"
            " checkpoint, stats, finished_at)"
            " VALUES ('projection', $1, 'DONE', 'r-1', now(), 2, $2::jsonb, $3::jsonb, now()) RETURNING id",
            f"day-{tag}",
            json.dumps({"after": str(U128)}),
            json.dumps({"accounts": 12, "findings": 1}),
        )
        running = await conn.fetchval(
            "INSERT INTO pm.reconciliation_run (sweep, period, owner, lease_until)"
            " VALUES ('projection', $1, 'r-2', now() + interval '1 minute') RETURNING id",
            f"now-{tag}",
        )
    listed = await _get(gateway, f"{RUNS}?sweep=projection&limit=200")
    assert listed.status_code == 200, listed.text
    mine = [r for r in listed.json() if r["period"].endswith(tag)]
    assert [r["id"] for r in mine] == [running, done]
    newest, oldest = mine
    assert (newest["status"], newest["owner"], newest["attempts"], newest["finishedAt"]) == (
        "RUNNING",
        "r-2",
        1,
        None,
    )
    assert (oldest["status"], oldest["attempts"], oldest["checkpoint"]) == ("DONE", 2, {"after": str(U128)})
    assert oldest["stats"] == {"accounts": 12, "findings": 1} and oldest["finishedAt"] is not None
    assert {"startedAt", "leaseUntil", "sweep"} <= set(oldest)
    assert all(r["sweep"] == "projection" for r in listed.json())
    assert len((await _get(gateway, f"{RUNS}?limit=1")).json()) == 1


def test_the_contract_names_the_sweeps_and_alert_fields_the_library_has() -> None:
    assert recon_api.SWEEPS == requests.SWEEPS
    assert set(recon_api.Alert.__struct_fields__) == set(alerts.Alert.__struct_fields__)
    assert set(recon_api.ALERT_STATUS_FILTERS) == {*alerts.STATUSES, "UNRESOLVED", "ALL"}
    # A report is sent field for field (`msgspec.convert(..., from_attributes=True)`): the same names.
    pairs = [
        (recon_api.Report, reports.Report),
        (recon_api.ReportVolume, reports.Volume),
        (recon_api.ReportRevenue, reports.Revenue),
        (recon_api.ReportFxBought, reports.FxBought),
        (recon_api.ReportFailure, reports.Failure),
        (recon_api.ReportAlertCount, reports.AlertCount),
        (recon_api.ReportOpenAlert, reports.OpenAlert),
    ]
    for ours, theirs in pairs:
        assert set(ours.__struct_fields__) == set(theirs.__struct_fields__), ours
    assert set(recon_api.ReportPspTotals.__struct_fields__) == {
        *reports.PspTotals.__struct_fields__,
        "matches",
    }


# --- reports --------------------------------------------------------------------------------------


def _quiet_day() -> date:
    """A day of its own for one test, long before any intent the session makes."""
    return date(2001, 1, 1) + timedelta(days=uuid.uuid4().int % 6000)


async def _settlement_run(pool: Pool, day: date, stats: dict[str, int]) -> None:
    """A finished settlement sweep of `day`, as the reconciler leaves it: the PSP totals in its stats."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO pm.reconciliation_run (sweep, period, status, owner, lease_until, stats,"
            " finished_at) VALUES ('settlement', $1, 'DONE', 'r-1', now(), $2::jsonb, now())",
            f"{day.isoformat()}T00:00:00Z/86400@{uuid.uuid4().hex[:12]}",
            json.dumps(stats),
        )


async def test_a_report_is_json_by_default_with_the_psp_totals_and_the_unresolved_alerts(
    gateway: Gateway, db_pool: Pool
) -> None:
    day, kind = _quiet_day(), _kind()
    await _alert(db_pool, kind)
    await _settlement_run(
        db_pool,
        day,
        {"ipps:THB:settled_count": 2, "ipps:THB:settled_amount": 150_000, "ipps:THB:report_count": 1}
        | {"ipps:THB:report_amount": 100_000, "ipps:THB:report_fee": 500, "ipps:THB:missing": 1},
    )
    response = await _get(gateway, f"/v1/admin/reconciliation/reports/{day.isoformat()}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json" and response.headers["vary"] == "Accept"
    report = response.json()
    assert (report["period"], report["start"][:10], report["end"][:10]) == (
        day.isoformat(),
        day.isoformat(),
        (day + timedelta(days=1)).isoformat(),
    )
    assert (report["volumes"], report["failures"], report["fxBought"]) == ([], [], [])
    assert report["psp"] == [
        {
            "psp": "ipps",
            "currency": "THB",
            "settledCount": 2,
            "settledAmount": 150_000,
            "reportCount": 1,
            "reportAmount": 100_000,
            "reportFee": 500,
            "missing": 1,
            "unknown": 0,
            "matches": False,
        }
    ]
    assert {"kind": kind, "status": "OPEN", "count": 1} in report["alertCounts"]
    assert report["openAlertTotal"] >= 1 and "generatedAt" in report
    # The week holds the day's totals.
    year, week, _ = day.isocalendar()
    weekly = (await _get(gateway, f"/v1/admin/reconciliation/reports/{year:04d}-W{week:02d}")).json()
    assert weekly["psp"][0]["settledAmount"] == 150_000 and weekly["start"][:10] <= day.isoformat()


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("text/csv", "text/csv"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("text/csv;q=0.5, text/html", "text/html"),
        ("text/*", "text/csv"),
        ("*/*", "application/json"),
        ("application/json, text/csv", "application/json"),
        ("image/png", "application/json"),
        ("text/csv;q=2, text/html;q=bogus", "application/json"),
        (",;,;q=", "application/json"),
    ],
)
async def test_a_report_comes_in_the_media_type_accept_prefers(
    gateway: Gateway, accept: str, media: str
) -> None:
    day = _quiet_day().isoformat()
    response = await gateway.send(
        "GET", f"/v1/admin/reconciliation/reports/{day}", key=gateway.admin, headers={"Accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == media
    if media == "text/csv":
        assert response.text.splitlines()[0].split(",") == list(reports.COLUMNS)
        assert response.headers["content-disposition"] == f'attachment; filename="{day}.csv"'
    elif media == "text/html":
        assert response.text.lstrip().lower().startswith("<!doctype html") and day in response.text
    else:
        assert response.json()["period"] == day


@pytest.mark.parametrize(
    "period", ["2026-02-30", "2026-W54", "2026-W00", "0000-01-01", "2026-12", "2026-w49"]
)
async def test_a_period_that_is_no_day_or_week_is_422(gateway: Gateway, period: str) -> None:
    problem = _problem(
        await _get(gateway, f"/v1/admin/reconciliation/reports/{period}"), 422, "period_invalid"
    )
    assert problem["errors"][0]["path"] == "path.period"


async def test_a_report_is_for_admin_keys_only(gateway: Gateway) -> None:
    _problem(await gateway.send("GET", "/v1/admin/reconciliation/reports/2026-W49"), 403, "forbidden_admin")


def test_the_document_says_a_report_comes_as_json_csv_or_html() -> None:
    operation = openapi.document()["paths"]["/v1/admin/reconciliation/reports/{period}"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv", "text/html"}
