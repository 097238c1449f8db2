"""`pm recon` against a real database: alerts listed and moved through their lifecycle with a log,
refusals with their exit codes, a repair that has nothing to propose, a sweep nobody runs, a report
written as CSV and HTML. (Sweeps and applied repairs end to end: tests/test_reconciliation.py.)"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
from typer.testing import CliRunner

from pm_shared.db import Pool
from pm_shared.reconciliation import reports, requests
from pm_shared.streams.connection import connect
from pm_tools.cli.app import app
from pm_tools.testing import fixtures


async def _alert(db_pool: Pool, kind: str = "projection_drift") -> tuple[int, str]:
    subject = f"cli-{uuid.uuid4().hex[:10]}"
    alert_id = await db_pool.fetchval(
        """INSERT INTO pm.reconciliation_alert (kind, subject, period, detail)
           VALUES ($1, $2, 'current', '{"ledger": 5}') RETURNING id""",
        kind,
        subject,
    )
    assert isinstance(alert_id, int)
    return alert_id, subject


async def _pm(database_url: str, *args: str, redis_url: str = "") -> tuple[int, str]:
    env = {"PM_DATABASE_URL": database_url, **({"PM_REDIS_URL": redis_url} if redis_url else {})}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.output


async def test_an_alert_is_listed_acknowledged_resolved_and_logged(db_pool: Pool, database_url: str) -> None:
    alert_id, subject = await _alert(db_pool)
    code, out = await _pm(database_url, "recon", "alerts", "--json", "--kind", "projection_drift")
    assert code == 0, out
    listed = [msgspec.json.decode(line) for line in out.splitlines()]
    assert [(a["subject"], a["status"]) for a in listed if a["id"] == alert_id] == [(subject, "OPEN")]

    code, out = await _pm(database_url, "recon", "ack", str(alert_id), "--note", "looking")
    assert (code, out.strip()) == (0, f"alert {alert_id}: ACKNOWLEDGED"), out
    code, out = await _pm(database_url, "recon", "ack", str(alert_id))
    assert code == 1 and "ACKNOWLEDGED" in out, out  # already acknowledged
    code, out = await _pm(database_url, "recon", "resolve", str(alert_id), "--note", "fixed by hand")
    assert (code, out.strip()) == (0, f"alert {alert_id}: RESOLVED"), out
    code, out = await _pm(database_url, "recon", "resolve", str(alert_id))
    assert code == 1, out

    code, out = await _pm(database_url, "recon", "alerts", "--json", "--kind", "projection_drift")
    assert alert_id not in [msgspec.json.decode(line)["id"] for line in out.splitlines()]
    code, out = await _pm(database_url, "recon", "show", str(alert_id))
    assert code == 0, out
    shown = msgspec.json.decode(out)
    assert [entry["action"] for entry in shown["log"]] == ["acknowledged", "resolved"]
    assert shown["alert"]["note"] == "fixed by hand" and shown["repair"] is None


async def test_bad_input_and_unknown_alerts_are_refused(database_url: str) -> None:
    assert (await _pm(database_url, "recon", "alerts", "--status", "closed"))[0] == 2
    assert (await _pm(database_url, "recon", "show", "999999999"))[0] == 1
    assert (await _pm(database_url, "recon", "repair", "1"))[0] == 2  # neither --dry-run nor --yes
    assert (await _pm(database_url, "recon", "run", "everything"))[0] == 2
    assert (await _pm(database_url, "recon", "run", "verify", "--day", "2026-02-30"))[0] == 2
    assert (await _pm(database_url, "recon", "report", "--day", "yesterday"))[0] == 2


async def test_an_alert_no_transfer_can_fix_has_no_repair(db_pool: Pool, database_url: str) -> None:
    alert_id, _ = await _alert(db_pool)
    code, out = await _pm(database_url, "recon", "repair", str(alert_id), "--dry-run")
    assert code == 1 and "by hand" in out, out
    code, out = await _pm(database_url, "recon", "repair", str(alert_id), "--yes")
    assert code == 1 and "no repair proposed" in out, out


async def test_a_sweep_asked_while_no_reconciler_runs_waits_in_its_list(database_url: str) -> None:
    redis = connect(fixtures.test_redis_url())
    try:
        await redis.delete(requests.REQUESTS_KEY)
        code, out = await _pm(
            database_url, "recon", "run", "totals", "--wait", "0.3", redis_url=fixtures.test_redis_url()
        )
        assert code == 1 and "is pm-reconciler running" in out, out
        [queued] = await redis.lrange(requests.REQUESTS_KEY, 0, -1)
        assert requests.decode(queued).sweep == "totals"
    finally:
        await redis.delete(requests.REQUESTS_KEY)
        await redis.aclose()


def test_a_daily_report_is_written_as_csv_and_html(database_url: str, tmp_path: Path) -> None:
    args = ["recon", "report", "--day", "2026-01-05", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args, env={"PM_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["2026-01-05.csv", "2026-01-05.html"], written
    html = (tmp_path / "2026-01-05.html").read_text()
    assert html.lower().startswith("<!doctype html") and "2026-01-05" in html, html[:300]
    header = (tmp_path / "2026-01-05.csv").read_text().splitlines()[0]
    assert header.split(",") == list(reports.COLUMNS), header
