"""`pm alerts list|resolve` against a real database: open alerts listed, resolved ones hidden unless
asked, resolving twice keeps the first time, an unknown id is an error (exit 1)."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from typer.testing import CliRunner

from pm_shared.db import Pool
from pm_tools.cli.app import app


async def _alert(db_pool: Pool, kind: str, intent_id: str) -> int:
    alert_id = await db_pool.fetchval(
        """INSERT INTO pm.reconciliation_alert (kind, intent_id, stream, entry_id, detail)
           VALUES ($1, $2, '{pm:psp:results:0}:dlq', $3, '{"error": "database down", "status": "SUCCEEDED"}')
           RETURNING id""",
        kind,
        intent_id,
        f"{uuid.uuid4().int % 10**12}-0",
    )
    assert isinstance(alert_id, int)
    return alert_id


async def _pm(database_url: str, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env={"PM_DATABASE_URL": database_url}
    )
    return result.exit_code, result.output


async def test_open_alerts_are_listed_and_resolved_once(db_pool: Pool, database_url: str) -> None:
    intent_id = str(uuid.uuid4())
    first = await _alert(db_pool, "psp_result_dead_lettered", intent_id)
    second = await _alert(db_pool, "psp_job_dead_lettered", intent_id)

    code, out = await _pm(database_url, "alerts", "list", "--json")
    assert code == 0, out
    listed = [msgspec.json.decode(line) for line in out.splitlines()]
    ours = [a for a in listed if a["intentId"] == intent_id]
    assert [a["id"] for a in ours] == [second, first]  # newest first
    assert ours[1]["detail"] == {"error": "database down", "status": "SUCCEEDED"}
    assert all(a["resolvedAt"] is None for a in ours)

    code, out = await _pm(database_url, "alerts", "resolve", str(first))
    assert code == 0 and f"alert {first}: resolved" in out, out
    resolved_at = await db_pool.fetchval(
        "SELECT resolved_at FROM pm.reconciliation_alert WHERE id = $1", first
    )
    assert resolved_at is not None
    code, out = await _pm(database_url, "alerts", "resolve", str(first))
    assert code == 0 and "was resolved already" in out, out
    assert (
        await db_pool.fetchval("SELECT resolved_at FROM pm.reconciliation_alert WHERE id = $1", first)
        == resolved_at
    )

    code, out = await _pm(database_url, "alerts", "list", "--json")
    open_ids = {msgspec.json.decode(line)["id"] for line in out.splitlines()}
    assert second in open_ids and first not in open_ids
    code, out = await _pm(database_url, "alerts", "list", "--all", "--json")
    assert {first, second} <= {msgspec.json.decode(line)["id"] for line in out.splitlines()}

    code, out = await _pm(database_url, "alerts", "list")
    assert code == 0 and "psp_job_dead_lettered" in out and intent_id in out, out


async def test_an_unknown_alert_id_is_an_error_and_changes_nothing(db_pool: Pool, database_url: str) -> None:
    known = await _alert(db_pool, "psp_result_dead_lettered", str(uuid.uuid4()))
    code, out = await _pm(database_url, "alerts", "resolve", str(known), "999999999")
    assert code == 1, out
    assert "no alert 999999999; nothing was marked" in out
    resolved_at = await db_pool.fetchval(
        "SELECT resolved_at FROM pm.reconciliation_alert WHERE id = $1", known
    )
    assert resolved_at is None
