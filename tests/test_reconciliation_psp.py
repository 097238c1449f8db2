"""PSP settlement reconciliation end to end: PromptPay withdrawals paid out through the IPPS sandbox (real
processes: gateway, orchestrator, ledger-writer, adapter, sandbox), then the reconciler's settlement
sweep reads the sandbox's settlement report over HTTP and compares it with PM's records.

A clean day reports nothing; a line missing from the report and a line PM never made are one alert each;
once the PSP's report is right again, both resolve.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pm_client import api as http_api
from pm_client.client import PMClient
from pm_reconciler.sweeps.runner import Runner
from pm_reconciler.sweeps.settlement import SettlementSweep
from pm_reconciler.sweeps.window import Window
from pm_shared import db
from pm_shared.messages import psp_key
from pm_shared.reconciliation import kinds, settlement
from pm_tools.testing.psp import MOBILE, Psp, psp_fleet, user
from pm_tools.testing.saga import fetch, fund, open_wallet, run_intent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Psp]:
    with psp_fleet(Path(tmp_path_factory.mktemp("recon-psp"))) as running:
        yield running


@pytest.fixture
async def admin(psp: Psp) -> AsyncIterator[PMClient]:
    async with psp.saga.client(psp.saga.admin) as client:
        yield client


async def withdrawn(admin: PMClient, amount: int) -> str:
    payer = user("rs")
    await open_wallet(admin, payer)
    await fund(admin, payer, 100_000)
    intent = await run_intent(
        admin,
        http_api.CreateIntent(
            type="PROMPTPAY_WITHDRAWAL",
            amount=amount,
            currency="THB",
            from_=http_api.UserParty(id=payer),
            to=http_api.PromptPayParty(proxy_type="MSISDN", proxy_value=MOBILE),
        ),
        timeout=60,
    )
    assert intent.status == "SETTLED", intent
    return intent.id


async def sweep(psp: Psp) -> dict[str, int] | None:
    """The reconciler's settlement sweep of today, as a run of its own (the scheduled one covers
    yesterday), in this process against the fleet's database and the sandbox."""
    pool = await db.create_pool(psp.saga.database_url, min_size=1, max_size=2)
    try:
        runner = Runner(pool, "tests", lease_ms=30_000, cap=50)
        swept = SettlementSweep(pool, [settlement.Psp("ipps", psp.ipps_url, "")])
        today = datetime.now(UTC).date().isoformat()
        return await runner.run(
            swept, Window.of_day(today), f"{today}T00:00:00Z/86400@{uuid.uuid4().hex[:8]}"
        )
    finally:
        await pool.close()


async def psp_alerts(psp: Psp) -> list[dict[str, Any]]:
    return await fetch(
        psp.saga.database_url,
        "SELECT id, kind, subject, status, resolved_by FROM pm.reconciliation_alert"
        " WHERE kind LIKE 'psp_%' ORDER BY id",
    )


async def test_settlement_report_against_our_payouts(psp: Psp, admin: PMClient) -> None:
    first = await withdrawn(admin, 1_500)
    second = await withdrawn(admin, 2_500)
    stats = await sweep(psp)
    assert stats is not None and stats["findings"] == 0, stats
    assert stats["ipps:THB:settled_count"] >= 2 and stats["ipps:THB:report_count"] >= 2, stats
    assert await psp_alerts(psp) == []

    missing = psp_key(first, "psp_payout")
    faults = {
        "omit": [missing],
        "extra": [{"merchant_reference": "not-ours-1", "amount": 999, "psp_reference": "ipps-extra-1"}],
    }
    async with httpx.AsyncClient(base_url=psp.ipps_url, timeout=5.0) as http:
        made = await http.post("/_sim/settlement", json=faults)
        assert made.status_code in (200, 201, 204), made.text
        try:
            stats = await sweep(psp)
            found = await psp_alerts(psp)
            assert sorted((a["kind"], a["subject"], a["status"]) for a in found) == [
                (kinds.PSP_MISSING, f"ipps:{missing}", "OPEN"),
                (kinds.PSP_UNKNOWN, "ipps:ipps-extra-1", "OPEN"),
            ], found
            assert all(second not in str(a["subject"]) for a in found)
        finally:
            cleared = await http.delete("/_sim/settlement")
            assert cleared.status_code in (200, 204), cleared.text
    stats = await sweep(psp)
    assert stats is not None and stats["findings"] == 0, stats
    after = await psp_alerts(psp)
    assert [(a["status"], a["resolved_by"]) for a in after] == [("RESOLVED", "reconciler")] * 2, after
