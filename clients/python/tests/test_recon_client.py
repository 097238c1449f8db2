"""The SDK's reconciliation calls against httpx.MockTransport: what each sends (method, path, query,
body, `Accept`), what it decodes the answer into, what it refuses before sending, and which calls
are not retried when a connection drops (a repeat would not be harmless)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from pm_client import PMClient, PMError, SyncPMClient, recon_api, signing

BASE = "http://pm.test"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport that keeps every request and answers each with `answer`."""

    def __init__(self, answer: httpx.Response | Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request) if callable(self.answer) else self.answer


def client(recorder: Recorder) -> PMClient:
    return PMClient(BASE, "key-1", "s3cret", transport=recorder.transport)


def alert_json(alert_id: int = 7, status: str = "OPEN") -> dict[str, Any]:
    return {
        "id": alert_id,
        "kind": "posted_zero",
        "subject": "0196a1b2-0000-7000-8000-000000000001",
        "period": "continuous",
        "intentId": "0196a1b2-0000-7000-8000-000000000001",
        "status": status,
        "occurrences": 2,
        "detail": {"legs": [{"leg": "main", "id": str(2**128 - 1)}]},
        "createdAt": "2026-12-07T10:00:00Z",
        "lastSeenAt": "2026-12-07T11:00:00Z",
        "someFutureField": True,
    }


def run_json() -> dict[str, Any]:
    return {
        "id": 3,
        "sweep": "orphans",
        "period": "2026-12-06T00:00:00Z/86400",
        "status": "DONE",
        "owner": "host:1:abc",
        "attempts": 1,
        "checkpoint": {},
        "stats": {"findings": 0},
        "startedAt": "2026-12-07T00:10:00Z",
        "finishedAt": "2026-12-07T00:11:00Z",
        "leaseUntil": "2026-12-07T00:11:00Z",
    }


async def test_list_alerts_sends_only_the_filters_given_and_reads_the_page() -> None:
    page = {"items": [alert_json()], "nextCursor": "7", "links": {"next": "/v1/…?before=7"}}
    recorder = Recorder(httpx.Response(200, json=page))
    async with client(recorder) as pm:
        found = await pm.list_alerts(kind="posted_zero", limit=1)
        await pm.list_alerts(status="ALL", before=7)
    first, second = recorder.requests
    assert first.url.raw_path.decode() == "/v1/admin/reconciliation/alerts?kind=posted_zero&limit=1"
    assert second.url.raw_path.decode() == "/v1/admin/reconciliation/alerts?status=ALL&before=7&limit=50"
    assert (found.next_cursor, found.links.next) == ("7", "/v1/…?before=7")
    [alert] = found.items
    assert (alert.id, alert.status, alert.intent_id, alert.note) == (
        7,
        "OPEN",
        alert_json()["intentId"],
        None,
    )
    assert alert.detail["legs"] == [{"leg": "main", "id": str(2**128 - 1)}]


async def test_an_alert_comes_with_its_log_and_its_repair() -> None:
    repair = {
        "id": 1,
        "status": "PROPOSED",
        "intentId": None,
        "transfers": [{"id": str(2**128 - 1), "amount": "5", "ledger": 764, "code": 9000}],
        "proposedAt": "2026-12-07T12:00:00Z",
    }
    history = [{"action": "opened", "actor": "reconciler", "note": None, "at": "2026-12-07T10:00:00Z"}]
    recorder = Recorder(httpx.Response(200, json={**alert_json(), "history": history, "repair": repair}))
    async with client(recorder) as pm:
        shown = await pm.get_alert(7)
    assert recorder.requests[0].url.raw_path.decode() == "/v1/admin/reconciliation/alerts/7"
    assert [(h.action, h.actor) for h in shown.history] == [("opened", "reconciler")]
    assert shown.repair is not None
    [transfer] = shown.repair.transfers
    assert (transfer.id, transfer.amount, transfer.debit_account_id) == (str(2**128 - 1), "5", "0")


async def test_ack_and_resolve_send_the_note_and_are_not_retried_when_the_connection_drops() -> None:
    recorder = Recorder(httpx.Response(200, json=alert_json(status="ACKNOWLEDGED")))
    async with client(recorder) as pm:
        acked = await pm.acknowledge_alert(7, note="on it")
        await pm.resolve_alert(7)
    ack, resolve = recorder.requests
    assert (ack.method, ack.url.path, json.loads(ack.content)) == (
        "POST",
        "/v1/admin/reconciliation/alerts/7/ack",
        {"note": "on it"},
    )
    assert (resolve.url.path, json.loads(resolve.content)) == (
        "/v1/admin/reconciliation/alerts/7/resolve",
        {},
    )
    assert acked.status == "ACKNOWLEDGED"

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    dropping = Recorder(drop)
    async with client(dropping) as pm:
        with pytest.raises(httpx.ReadError):
            await pm.acknowledge_alert(7)
        with pytest.raises(httpx.ReadError):
            await pm.request_reconciliation_run("verify")
    assert len(dropping.requests) == 2  # once each


async def test_a_state_conflict_is_a_pm_error_with_its_code() -> None:
    problem = {
        "type": "urn:pm:problem:alert_state",
        "title": "Conflict",
        "status": 409,
        "code": "alert_state",
    }
    answer = httpx.Response(409, json=problem, headers={"Content-Type": "application/problem+json"})
    async with client(Recorder(answer)) as pm:
        with pytest.raises(PMError) as refused:
            await pm.resolve_alert(7, note="again")
    assert refused.value.status == 409 and refused.value.problem is not None
    assert refused.value.problem.code == "alert_state"


async def test_a_run_request_and_the_runs() -> None:
    requested: dict[str, Any] = {
        "id": "abc123def456",
        "sweep": "orphans",
        "day": "2026-12-06",
        "period": "2026-12-06T00:00:00Z/86400@abc123def456",
        "requestedBy": "key-1",
        "links": {"runs": "/v1/admin/reconciliation/runs?sweep=orphans"},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=requested)
        return httpx.Response(200, json=[run_json()])

    recorder = Recorder(answer)
    async with client(recorder) as pm:
        asked = await pm.request_reconciliation_run("orphans", day="2026-12-06")
        runs = await pm.list_reconciliation_runs(sweep="orphans", limit=5)
        await pm.list_reconciliation_runs()
    post, listed, everything = recorder.requests
    assert json.loads(post.content) == {"sweep": "orphans", "day": "2026-12-06"}
    assert (asked.period, asked.links.runs) == (requested["period"], requested["links"]["runs"])
    assert listed.url.raw_path.decode() == "/v1/admin/reconciliation/runs?sweep=orphans&limit=5"
    assert everything.url.raw_path.decode() == "/v1/admin/reconciliation/runs?limit=50"
    assert [(r.sweep, r.status, r.stats) for r in runs] == [("orphans", "DONE", {"findings": 0})]


async def test_a_sweep_the_reconciler_does_not_have_is_refused_before_sending() -> None:
    recorder = Recorder(httpx.Response(500))
    async with client(recorder) as pm:
        with pytest.raises(msgspec.ValidationError):
            await pm.request_reconciliation_run("everything")
        with pytest.raises(msgspec.ValidationError):
            await pm.request_reconciliation_run("verify", day="7 Dec")
    assert recorder.requests == []


async def test_a_report_as_data_or_as_csv_and_html_text() -> None:
    report = {
        "period": "2026-W49",
        "start": "2026-11-30T00:00:00Z",
        "end": "2026-12-07T00:00:00Z",
        "generatedAt": "2026-12-07T01:00:00Z",
        "volumes": [{"currency": "THB", "intentType": "P2P", "count": 3, "amount": 30000}],
        "psp": [
            {
                "psp": "ipps",
                "currency": "THB",
                "settledCount": 1,
                "settledAmount": 5,
                "reportCount": 1,
                "reportAmount": 5,
                "reportFee": 0,
                "matches": True,
            }
        ],
        "openAlertTotal": 0,
    }

    def answer(request: httpx.Request) -> httpx.Response:
        accept = request.headers["accept"]
        if accept == "application/json":
            return httpx.Response(200, json=report)
        return httpx.Response(
            200, text=f"period,section\r\n2026-W49,{accept}\r\n", headers={"Content-Type": accept}
        )

    recorder = Recorder(answer)
    async with client(recorder) as pm:
        data = await pm.get_reconciliation_report("2026-W49")
        csv_text = await pm.get_reconciliation_report_text("2026-W49")
        html_text = await pm.get_reconciliation_report_text("2026-W49", media_type="text/html")
        with pytest.raises(ValueError, match="text/csv or text/html"):
            await pm.get_reconciliation_report_text("2026-W49", media_type="application/pdf")
    assert [r.url.path for r in recorder.requests] == ["/v1/admin/reconciliation/reports/2026-W49"] * 3
    assert (data.volumes[0].intent_type, data.psp[0].matches, data.failures) == ("P2P", True, [])
    assert csv_text.endswith("2026-W49,text/csv\r\n") and "text/html" in html_text


def test_the_sync_client_has_the_same_calls() -> None:
    page = {"items": [alert_json()]}
    recorder = Recorder(httpx.Response(200, json=page))
    with SyncPMClient(BASE, "key-1", "s3cret", transport=recorder.transport) as pm:
        assert [a.id for a in pm.list_alerts().items] == [7]
    (request,) = recorder.requests
    assert request.headers[signing.KEY_HEADER] == "key-1"
    async_calls = {n for n in vars(PMClient) if not n.startswith("_")} - {"aclose"}
    sync_calls = {n for n in vars(SyncPMClient) if not n.startswith("_")} - {"close"}
    assert async_calls == sync_calls and "resolve_alert" in sync_calls
    assert recon_api.SWEEPS == ("verify", "orphans", "projection", "totals", "settlement")
