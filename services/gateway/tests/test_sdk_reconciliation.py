"""The SDK's reconciliation calls against the real gateway: an admin lists an alert the reconciler
raised, reads it, acknowledges and resolves it, asks for a sweep, lists the runs and fetches a
report as data and as CSV."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from pm_client import PMClient, PMError
from pm_shared.db import Pool
from pm_shared.reconciliation import reports, requests
from pm_tools.testing.gateway import Gateway


@pytest.fixture
async def admin(gateway: Gateway, redis: Redis) -> AsyncIterator[PMClient]:
    """The SDK with the admin key; the sweep requests it queued taken off the reconcilers' list after."""
    async with PMClient(gateway.url, gateway.admin.key_id, gateway.admin.secret) as pm:
        yield pm
    for raw in await redis.lrange(requests.REQUESTS_KEY, 0, -1):
        text = raw.decode() if isinstance(raw, bytes) else raw
        if requests.decode(text.encode()).requested_by == gateway.admin.key_id:
            await redis.lrem(requests.REQUESTS_KEY, 0, text)


async def test_an_admin_works_an_alert_through_with_the_sdk(
    admin: PMClient, gateway: Gateway, db_pool: Pool
) -> None:
    kind = f"sdk_{uuid.uuid4().hex[:12]}"
    async with db_pool.acquire() as conn:
        alert_id = await conn.fetchval(
            "INSERT INTO pm.reconciliation_alert (kind, subject, period, detail)"
            " VALUES ($1, 'ledger:764', 'continuous', $2::jsonb) RETURNING id",
            kind,
            json.dumps({"debitsPosted": 10, "creditsPosted": 9}),
        )
    page = await admin.list_alerts(kind=kind)
    assert [(a.id, a.status, a.detail) for a in page.items] == [
        (alert_id, "OPEN", {"debitsPosted": 10, "creditsPosted": 9})
    ]
    assert page.next_cursor is None
    acked = await admin.acknowledge_alert(alert_id, note="paging the ledger team")
    assert (acked.status, acked.acknowledged_by) == ("ACKNOWLEDGED", gateway.admin.key_id)
    with pytest.raises(PMError) as twice:
        await admin.acknowledge_alert(alert_id)
    assert twice.value.status == 409 and twice.value.problem is not None
    assert twice.value.problem.code == "alert_state"
    resolved = await admin.resolve_alert(alert_id)
    assert (resolved.status, resolved.note) == ("RESOLVED", "paging the ledger team")
    shown = await admin.get_alert(alert_id)
    assert [h.action for h in shown.history] == ["acknowledged", "resolved"] and shown.repair is None
    assert (await admin.list_alerts(kind=kind)).items == []
    assert [a.id for a in (await admin.list_alerts(kind=kind, status="RESOLVED")).items] == [alert_id]
    with pytest.raises(PMError) as unknown:
        await admin.get_alert(alert_id + 10_000_000)
    assert unknown.value.status == 404


async def test_an_admin_asks_for_a_sweep_and_reads_the_runs_and_a_report(admin: PMClient) -> None:
    asked = await admin.request_reconciliation_run("totals")
    assert (asked.sweep, asked.day) == ("totals", datetime.now(UTC).date().isoformat())
    assert asked.period.endswith(f"@{asked.id}") and asked.links.runs.endswith("sweep=totals")
    runs = await admin.list_reconciliation_runs(sweep="totals", limit=5)
    assert all(r.sweep == "totals" for r in runs) and len(runs) <= 5
    report = await admin.get_reconciliation_report("2026-W49")
    assert (report.period, report.start.isoformat()[:10]) == ("2026-W49", "2026-11-30")
    csv_text = await admin.get_reconciliation_report_text("2026-12-07")
    assert csv_text.splitlines()[0].split(",") == list(reports.COLUMNS)
    with pytest.raises(PMError) as refused:
        await admin.get_reconciliation_report("2026-W54")
    assert refused.value.problem is not None and refused.value.problem.code == "period_invalid"
