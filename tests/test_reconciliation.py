"""Reconciliation end to end: gateway, orchestrator, ledger-writer and reconciler as real processes
(pm_tools.testing.saga), the embedded ledger, on a database of this module's own.

Payments go through the gateway; each mismatch is then made for real — a transfer written to the ledger
behind PM's back, an intent row changed, an authorization left open, a projection row changed — and
the reconciler, asked through Redis like `pm recon run` asks it, must raise exactly one alert of the
right kind; once the mismatch is put right (by hand, or by a repair through the ledger-writer), the
alert must resolve on its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import tigerbeetle as tb

from pm_client.client import PMClient
from pm_shared import db
from pm_shared.intents import legs
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.ledger.api import Ledger
from pm_shared.reconciliation import kinds, repairs, requests
from pm_shared.streams import Publisher
from pm_shared.streams.connection import connect
from pm_tools.testing import fixtures, history
from pm_tools.testing.saga import SagaFleet, fetch, fund, module_saga, open_wallet, p2p, run_intent

pytestmark = pytest.mark.slow

THB = chart.LEDGERS["THB"]


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    with module_saga(Path(tmp_path_factory.mktemp("recon"))) as running:
        yield running


@pytest.fixture
async def pm(saga: SagaFleet) -> AsyncIterator[PMClient]:
    async with saga.client(saga.admin) as client:
        yield client


@pytest.fixture
async def ledger(saga: SagaFleet) -> AsyncIterator[Ledger]:
    """The embedded ledger, writable: what a program writing behind PM's back would use."""
    opened = await open_ledger("embedded+" + saga.database_url)
    try:
        yield opened
    finally:
        await opened.close()


async def sweep(saga: SagaFleet, name: str, day: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Ask the fleet's reconciler for a sweep of `day` (default today), as `pm recon run` does, and
    wait for its run."""
    asked = requests.request(name, day, "tests")
    redis = connect(fixtures.test_redis_url())
    try:
        await requests.enqueue(redis, asked)
    finally:
        await redis.aclose()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await fetch(
            saga.database_url,
            "SELECT status, stats FROM pm.reconciliation_run WHERE sweep = $1 AND period = $2",
            name,
            asked.period,
        )
        if rows and rows[0]["status"] == "DONE":
            await asyncio.sleep(0.3)  # the rechecks that follow the sweep
            return (
                dict(rows[0]["stats"])
                if isinstance(rows[0]["stats"], dict)
                else msgspec.json.decode(rows[0]["stats"])
            )
        await asyncio.sleep(0.1)
    pytest.fail(f"sweep {name} ({asked.period}) not done after {timeout}s; reconciler: {saga.logged()}")


async def alerts(saga: SagaFleet, *, unresolved: bool = True) -> list[dict[str, Any]]:
    where = "WHERE status <> 'RESOLVED'" if unresolved else ""
    return await fetch(
        saga.database_url,
        f"SELECT id, kind, subject, period, intent_id, status, occurrences, resolved_by"
        f" FROM pm.reconciliation_alert {where} ORDER BY id",
    )


async def about(saga: SagaFleet, subject: str) -> list[dict[str, Any]]:
    return [a for a in await alerts(saga, unresolved=False) if a["subject"] == subject]


async def eventually_resolved(saga: SagaFleet, alert_id: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await fetch(saga.database_url, "SELECT * FROM pm.reconciliation_alert WHERE id = $1", alert_id)
        if rows[0]["status"] == "RESOLVED":
            return rows[0]
        await asyncio.sleep(0.2)
    pytest.fail(f"alert {alert_id} not resolved after {timeout}s")


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def settled_p2p(pm: PMClient, amount: int = 1_000) -> tuple[str, str, str]:
    """A funded payer pays a payee; the intent id, payer, payee."""
    payer, payee = name("rc-payer"), name("rc-payee")
    for owner in (payer, payee):
        await open_wallet(pm, owner)
    await fund(pm, payer, 100_000)
    intent = await run_intent(pm, p2p(payer, payee, amount))
    assert intent.status == "SETTLED", intent
    return intent.id, payer, payee


# -- 1. clean payments: nothing to report --------------------------------------------------------------


async def test_clean_payments_raise_no_alert_and_are_checked_as_they_end(
    saga: SagaFleet, pm: PMClient
) -> None:
    await settled_p2p(pm)
    payer, payee = name("rc-poor"), name("rc-payee")
    for owner in (payer, payee):
        await open_wallet(pm, owner)
    refused = await run_intent(pm, p2p(payer, payee, 500))  # no money: fails at authorization
    assert refused.status == "FAILED", refused
    checked = await _checked(saga)
    deadline = time.monotonic() + 20
    while checked < 3 and time.monotonic() < deadline:  # a funding, a payment, a failure
        await asyncio.sleep(0.2)
        checked = await _checked(saga)
    assert checked >= 3, f"the continuous check saw {checked} intents end"
    for name_ in ("verify", "orphans", "projection", "totals"):
        stats = await sweep(saga, name_)
        assert stats.get("findings") == 0, (name_, stats)
    verified = await sweep(saga, "verify")
    assert verified["intents"] >= 3, verified
    assert await alerts(saga) == []


async def _checked(saga: SagaFleet) -> float:
    from pm_tools.testing.fleet import get, sample_value

    reconciler = next(p for p in saga.fleet.procs if p.name == "reconciler")
    reply = await get(reconciler.url("/metrics"))
    assert reply is not None
    return sample_value(reply.text, "pm_reconciler_intents_checked_total") or 0.0


# -- 2. an intent row whose amount differs ------------------------------------------------------------


async def test_an_intent_row_changed_is_one_amount_alert_resolved_once_put_back(
    saga: SagaFleet, pm: PMClient
) -> None:
    intent_id, _, _ = await settled_p2p(pm, 1_234)
    await fetch(
        saga.database_url, "UPDATE pm.intent SET amount = amount + 1 WHERE id = $1", uuid.UUID(intent_id)
    )
    await sweep(saga, "verify")
    found = await about(saga, intent_id)
    assert [(a["kind"], a["status"]) for a in found] == [(kinds.AMOUNT_MISMATCH, "OPEN")], found
    await fetch(
        saga.database_url, "UPDATE pm.intent SET amount = amount - 1 WHERE id = $1", uuid.UUID(intent_id)
    )
    await sweep(saga, "verify")
    resolved = await eventually_resolved(saga, found[0]["id"])
    assert resolved["resolved_by"] == "reconciler"


# -- 3. an authorization never voided -------------------------------------------------------------------


async def test_a_pending_left_open_is_one_alert_resolved_once_voided(
    saga: SagaFleet, pm: PMClient, ledger: Ledger
) -> None:
    payer, payee = name("rc-open"), name("rc-payee")
    await open_wallet(pm, payer)
    await fund(pm, payer, 10_000)
    failed = await run_intent(pm, p2p(payer, payee, 5_000))  # the payee has no wallet yet
    assert failed.status == "FAILED", failed
    await open_wallet(pm, payee)
    # As if its authorization had been made and its void lost: the hold PM's legs name, still open.
    hold = ids.transfer_id(failed.id, legs.PRINCIPAL)
    made = await ledger.create_transfers(
        [
            tb.Transfer(
                id=hold,
                debit_account_id=legs.wallet(payer, "THB").id,
                credit_account_id=legs.wallet(payee, "THB").id,
                amount=5_000,
                user_data_128=uuid.UUID(failed.id).int,
                ledger=THB,
                code=legs.TRANSFER_CODES["P2P"],
                flags=tb.TransferFlags.PENDING,
            )
        ]
    )
    assert [r.status for r in made] == [tb.CreateTransferStatus.CREATED], made
    await fetch(
        saga.database_url,
        "UPDATE pm.intent SET updated_at = updated_at - interval '1 minute' WHERE id = $1",
        uuid.UUID(failed.id),
    )
    await sweep(saga, "verify")
    found = await about(saga, failed.id)
    assert [a["kind"] for a in found] == [kinds.PENDING_NOT_RESOLVED], found
    voided = await ledger.create_transfers(
        [
            tb.Transfer(
                id=ids.transfer_id(failed.id, legs.PRINCIPAL + ":void"),
                pending_id=hold,
                ledger=THB,
                code=legs.TRANSFER_CODES["P2P"],
                user_data_128=uuid.UUID(failed.id).int,
                flags=tb.TransferFlags.VOID_PENDING_TRANSFER,
            )
        ]
    )
    assert [r.status for r in voided] == [tb.CreateTransferStatus.CREATED], voided
    await sweep(saga, "verify")
    await eventually_resolved(saga, found[0]["id"])


# -- 4. a transfer behind PM's back, reversed by a repair -----------------------------------------------


async def test_a_transfer_behind_pms_back_is_one_orphan_reversed_by_a_repair(
    saga: SagaFleet, pm: PMClient, ledger: Ledger
) -> None:
    lucky = name("rc-lucky")
    await open_wallet(pm, lucky)
    orphan_id = tb.id()
    made = await ledger.create_transfers(
        [
            tb.Transfer(
                id=orphan_id,
                debit_account_id=legs.operator(chart.Code.OPERATOR_EQUITY, "THB").id,
                credit_account_id=legs.wallet(lucky, "THB").id,
                amount=777,
                ledger=THB,
                code=1,
            )
        ]
    )
    assert [r.status for r in made] == [tb.CreateTransferStatus.CREATED], made
    await sweep(saga, "orphans")
    found = await about(saga, str(orphan_id))
    assert [(a["kind"], a["status"]) for a in found] == [(kinds.ORPHAN_TRANSFER, "OPEN")], found
    assert [a for a in await alerts(saga) if a["kind"] == kinds.ORPHAN_TRANSFER] == found
    await sweep(saga, "orphans")  # seen again by another run: still one alert
    assert [a["id"] for a in await about(saga, str(orphan_id))] == [found[0]["id"]]

    applied = await _repair(saga, found[0]["id"])
    assert [(t.debit_account_id, t.amount) for t in applied.transfers] == [
        (legs.wallet(lucky, "THB").id, 777)
    ]
    balance = (await ledger.lookup_accounts([legs.wallet(lucky, "THB").id]))[0]
    assert balance.credits_posted - balance.debits_posted == 0
    await sweep(saga, "orphans")
    await eventually_resolved(saga, found[0]["id"])
    actions = await fetch(
        saga.database_url,
        "SELECT action, actor FROM pm.reconciliation_alert_action WHERE alert_id = $1 ORDER BY id",
        found[0]["id"],
    )
    assert [(a["action"], a["actor"]) for a in actions] == [
        ("opened", "reconciler"),
        ("repaired", "tests"),
        ("resolved", "reconciler"),
    ], actions


async def _repair(saga: SagaFleet, alert_id: int) -> repairs.Proposal:
    """Propose, then apply through the ledger-writer (as `pm recon repair --yes` does)."""
    read = await open_ledger("embedded+" + saga.database_url, readonly=True)
    redis = connect(fixtures.test_redis_url())
    conn = await db.connect(saga.database_url)
    try:
        proposed = await repairs.propose(conn, read, alert_id)
        assert proposed.status == "PROPOSED" and proposed.transfers, proposed
        applied = await repairs.apply(conn, read, Publisher(redis), alert_id, "tests", wait_s=20)
        again = await repairs.apply(conn, read, Publisher(redis), alert_id, "tests", wait_s=20)
        assert again.transfers == applied.transfers  # applying twice changes nothing more
        return applied
    finally:
        await conn.close()
        await redis.aclose()
        await read.close()


# -- 5. a projection row changed -----------------------------------------------------------------------


async def test_a_projection_row_changed_is_one_drift_alert_resolved_once_put_back(
    saga: SagaFleet, pm: PMClient
) -> None:
    _, _, payee = await settled_p2p(pm, 2_000)
    account = uuid.UUID(int=legs.wallet(payee, "THB").id)
    await fetch(
        saga.database_url,
        "UPDATE pm.account_balance SET credits_posted = credits_posted + 5 WHERE account_id = $1",
        account,
    )
    await sweep(saga, "projection")
    found = await about(saga, str(account))
    assert [(a["kind"], a["period"]) for a in found] == [(kinds.PROJECTION_DRIFT, "current")], found
    await fetch(
        saga.database_url,
        "UPDATE pm.account_balance SET credits_posted = credits_posted - 5 WHERE account_id = $1",
        account,
    )
    await sweep(saga, "projection")
    await eventually_resolved(saga, found[0]["id"])


# -- 6. the historical amount=0 case, found and repaired --------------------------------------------------


async def test_intents_posted_with_amount_zero_are_found_and_repaired_through_the_ledger_writer(
    saga: SagaFleet, pm: PMClient, ledger: Ledger
) -> None:
    payer, payee = name("rc-2024-payer"), name("rc-2024-payee")
    for owner in (payer, payee):
        await open_wallet(pm, owner)
    await fund(pm, payer, 50_000)
    day = "2024-10-01"  # after TigerBeetle 0.16 (2024-09-02), with a client still on the old meaning
    at = datetime.fromisoformat(day + "T10:00:00+00:00")
    conn = await db.connect(saga.database_url)
    try:
        broken = [
            await history.zero_posted(conn, ledger, saga.admin.key_id, payer, payee, amount, at)
            for amount in (1_100, 2_200, 3_300)
        ]
        fine = await history.fully_posted(conn, ledger, saga.admin.key_id, payer, payee, 4_400, at)
    finally:
        await conn.close()
    payee_wallet = legs.wallet(payee, "THB").id

    async def payee_posted() -> int:
        account = (await ledger.lookup_accounts([payee_wallet]))[0]
        return int(account.credits_posted - account.debits_posted)

    assert await payee_posted() == 4_400  # the three zero posts moved nothing

    stats = await sweep(saga, "verify", day)
    assert stats["intents"] == 4 and stats["findings"] == 3, stats
    found = [a for a in await alerts(saga) if a["period"] == kinds.CONTINUOUS]
    assert sorted((a["kind"], a["subject"]) for a in found) == sorted((kinds.POSTED_ZERO, i) for i in broken)
    assert fine not in {a["subject"] for a in found}
    await sweep(saga, "projection")
    drift = {a["subject"] for a in await alerts(saga) if a["kind"] == kinds.PROJECTION_DRIFT}
    assert drift == {str(uuid.UUID(int=legs.wallet(o, "THB").id)) for o in (payer, payee)}, drift

    for alert in found:
        applied = await _repair(saga, alert["id"])
        [fix] = applied.transfers
        assert (fix.code, fix.user_data_128) == (50, uuid.UUID(alert["intent_id"]).int)
    assert await payee_posted() == 4_400 + 1_100 + 2_200 + 3_300

    await sweep(saga, "verify", day)
    for alert in found:
        await eventually_resolved(saga, alert["id"])
    await sweep(saga, "projection")
    assert [a for a in await alerts(saga) if a["kind"] == kinds.PROJECTION_DRIFT] == []
    await sweep(saga, "orphans")  # the corrections are PM's own transfers, not orphans
    assert [a for a in await alerts(saga) if a["kind"] == kinds.ORPHAN_TRANSFER] == []
