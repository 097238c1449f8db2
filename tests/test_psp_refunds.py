"""IPPS refund notifications end to end (docs/psp.md#refund-notifications): a settled PromptPay payout
the receiving bank sends back is credited back to the payer's wallet once per IPPS refund id.

The whole fleet runs as real processes (gateway, orchestrator, ledger-writer, reconciler, both
adapters, both sandboxes; `pm_tools.testing.psp`). The IPPS sandbox plays the receiving bank
(`POST /_sim/transfers/{id}/return`) and sends its signed `transfer.returned` callbacks to the gateway,
now, held, again, as a new event, or late.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from pm_adapter_ipps.refunds import refund_intent_id
from pm_client import api as http_api
from pm_client.client import PMClient
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.psp import IPPS_CALLBACK_SECRET, MOBILE, Psp, psp_fleet, user
from pm_tools.testing.saga import fetch, fund, history_rows, open_wallet, run_intent, thb_balance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Psp]:
    with psp_fleet(Path(tmp_path_factory.mktemp("psp-refunds"))) as running:
        yield running


@pytest.fixture
async def admin(psp: Psp) -> AsyncIterator[PMClient]:
    async with psp.saga.client(psp.saga.admin) as client:
        yield client


@pytest.fixture
async def ipps(psp: Psp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=psp.ipps_url, timeout=10.0) as client:
        yield client


async def settled_withdrawal(admin: PMClient, psp: Psp, test: str, amount: int) -> tuple[str, str, str]:
    """A funded payer's withdrawal of `amount`, paid out and SETTLED: (payer, intent id, transfer id)."""
    payer = user(test)
    await open_wallet(admin, payer)
    await fund(admin, payer, 100_000)
    body = http_api.CreateIntent(
        type="PROMPTPAY_WITHDRAWAL",
        amount=amount,
        currency="THB",
        from_=http_api.UserParty(id=payer),
        to=http_api.PromptPayParty(proxy_type="MSISDN", proxy_value=MOBILE),
    )
    intent = await run_intent(admin, body, timeout=30)
    assert intent.status == "SETTLED", psp.saga.about(intent.id)
    transfer = await psp.ipps_transfer(intent.id)
    assert transfer is not None and transfer["status"] == "SUCCESS"
    return payer, intent.id, transfer["transfer_id"]


async def send_back(ipps: httpx.AsyncClient, transfer_id: str, **body: Any) -> dict[str, Any]:
    made = await ipps.post(f"/_sim/transfers/{transfer_id}/return", json=body)
    assert made.status_code == 201, made.text
    refund: dict[str, Any] = made.json()
    return refund


async def deliver(ipps: httpx.AsyncClient, refund_id: str, **body: Any) -> str:
    asked = await ipps.post(f"/_sim/refunds/{refund_id}/callback", json=body)
    assert asked.status_code == 202, asked.text
    event_id: str = asked.json()["event_id"]
    return event_id


async def refund_row(psp: Psp, refund_id: str) -> dict[str, Any] | None:
    rows = await fetch(
        psp.saga.database_url, "SELECT * FROM pm.psp_refund WHERE psp = 'ipps' AND refund_id = $1", refund_id
    )
    return rows[0] if rows else None


async def decided(psp: Psp, refund_id: str, timeout: float = 20) -> dict[str, Any]:
    async def done() -> bool:
        row = await refund_row(psp, refund_id)
        return row is not None and row["status"] != "RECEIVED"

    await eventually(done, timeout=timeout, what=f"refund {refund_id} decided")
    row = await refund_row(psp, refund_id)
    assert row is not None
    return row


async def refunds_of(psp: Psp, intent_id: str) -> list[dict[str, Any]]:
    return await fetch(
        psp.saga.database_url,
        "SELECT id, amount, state FROM pm.intent WHERE original_intent_id = $1 ORDER BY amount",
        uuid.UUID(intent_id),
    )


async def settled_refund(psp: Psp, intent_id: str) -> dict[str, Any]:
    """The REFUND intent's row once SETTLED."""
    query = "SELECT * FROM pm.intent WHERE id = $1"

    async def settled() -> bool:
        rows = await fetch(psp.saga.database_url, query, uuid.UUID(intent_id))
        return bool(rows) and rows[0]["state"] == "SETTLED"

    await eventually(settled, timeout=30, what=f"refund intent {intent_id} settled")
    [row] = await fetch(psp.saga.database_url, query, uuid.UUID(intent_id))
    return row


async def alert(psp: Psp, refund_id: str) -> dict[str, Any] | None:
    rows = await fetch(
        psp.saga.database_url,
        "SELECT * FROM pm.reconciliation_alert WHERE kind = 'psp_refund_unmatched' AND subject = $1",
        f"ipps:{refund_id}",
    )
    return rows[0] if rows else None


async def test_a_returned_payout_is_credited_back_once_and_shown_beside_the_withdrawal(
    psp: Psp, admin: PMClient, ipps: httpx.AsyncClient
) -> None:
    payer, withdrawal, transfer_id = await settled_withdrawal(admin, psp, "back", 10_000)
    assert (await thb_balance(admin, payer)).posted == 90_000

    refund = await send_back(ipps, transfer_id)  # the callback goes to the gateway at once

    row = await decided(psp, refund["refund_id"])
    assert (row["status"], row["amount"], row["notifications"]) == ("CREDITED", 10_000, 1)
    refunded = await settled_refund(psp, str(refund_intent_id(refund["refund_id"])))
    assert (refunded["type"], refunded["amount"]) == ("REFUND", 10_000)
    assert str(refunded["original_intent_id"]) == withdrawal
    assert json.loads(refunded["target"]) == {"kind": "user", "id": payer}
    assert row["refund_intent_id"] == refunded["id"]
    # The API shows it as it shows any intent: back from the very payee the withdrawal paid (its
    # money out of IPPS clearing), to the payer, linked to the withdrawal.
    shown = await admin.get_intent(str(refunded["id"]))
    assert (shown.type, shown.status, shown.amount, shown.original_intent_id) == (
        "REFUND",
        "SETTLED",
        10_000,
        withdrawal,
    )
    assert shown.from_ == http_api.PromptPayParty(proxy_type="MSISDN", proxy_value=MOBILE)
    assert shown.to == http_api.UserParty(id=payer)
    balance = await thb_balance(admin, payer)
    assert (balance.posted, balance.pending) == (100_000, 0)
    history = await admin.wallet_history(payer)
    back = [h for h in history.items if h.intent_id == str(refunded["id"])]
    assert [(h.direction, h.type, h.amount, h.original_intent_id) for h in back] == [
        ("in", "REFUND", 10_000, withdrawal)
    ]
    assert history_rows(history, withdrawal)  # the withdrawal is still there, beside it
    assert await alert(psp, refund["refund_id"]) is None


async def test_duplicated_and_reordered_callbacks_credit_each_refund_once(
    psp: Psp, admin: PMClient, ipps: httpx.AsyncClient
) -> None:
    payer, withdrawal, transfer_id = await settled_withdrawal(admin, psp, "dup", 10_000)
    first = await send_back(ipps, transfer_id, amount=3_000, callback="hold")
    second = await send_back(ipps, transfer_id, amount=2_000, callback="hold")

    # The second return's callback first; the first's late, then redelivered, then notified anew.
    late = await deliver(ipps, first["refund_id"], delay_ms=500)
    await deliver(ipps, second["refund_id"])
    await decided(psp, second["refund_id"])
    row = await decided(psp, first["refund_id"])
    assert await deliver(ipps, first["refund_id"]) == late  # the same event: the gateway drops it
    await deliver(ipps, first["refund_id"], new_event=True)  # a new event: the adapter counts it

    async def counted() -> bool:
        found = await refund_row(psp, first["refund_id"])
        return found is not None and found["notifications"] == 2

    await eventually(counted, timeout=15, what="the new event counted")
    assert row["status"] == "CREDITED"
    assert (await refund_row(psp, second["refund_id"]) or {})["notifications"] == 1
    made = await refunds_of(psp, withdrawal)
    assert [m["amount"] for m in made] == [2_000, 3_000]

    async def both_settled() -> bool:
        return [m["state"] for m in await refunds_of(psp, withdrawal)] == ["SETTLED", "SETTLED"]

    await eventually(both_settled, timeout=30, what="both refunds settled")
    assert (await thb_balance(admin, payer)).posted == 90_000 + 5_000
    deliveries = (await ipps.get("/_sim/callbacks")).json()
    ours = [d for d in deliveries if d.get("refund_id") == first["refund_id"] and d["status_code"] == 200]
    assert len(ours) == 3  # three deliveries reached the gateway, one credit


def _signed(refund: dict[str, Any], transfer_id: str, secret: str, at: int) -> tuple[bytes, dict[str, str]]:
    transfer = {"transfer_id": transfer_id, "idempotency_key": refund["idempotency_key"], "status": "SUCCESS"}
    data = {"event": "transfer.returned", "event_id": "evt_forged", "sequence": 3, "transfer": transfer}
    body = msgspec.json.encode({**data, "refund": refund})
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-IPPS-Signature": f"t={at},v1={mac}"}


async def test_forged_stale_and_off_allowlist_refund_callbacks_are_refused_and_credit_nothing(
    psp: Psp, admin: PMClient, ipps: httpx.AsyncClient
) -> None:
    payer, withdrawal, transfer_id = await settled_withdrawal(admin, psp, "forge", 10_000)
    refund = await send_back(ipps, transfer_id, callback="hold")  # real, but never called back
    webhook = psp.saga.gateway.url("/v1/webhooks/ipps")
    now = int(time.time())
    async with httpx.AsyncClient(timeout=5.0) as client:
        body, headers = _signed(refund, transfer_id, "not-the-secret", now)
        forged = await client.post(webhook, content=body, headers=headers)
        body, headers = _signed(refund, transfer_id, IPPS_CALLBACK_SECRET, now - 301)
        stale = await client.post(webhook, content=body, headers=headers)
        strict = psp.fleet.start("gateway", env={"PM_GATEWAY_IPPS_CALLBACK_ALLOWLIST": "10.99.0.0/16"})
        await strict.wait_ready()
        body, headers = _signed(refund, transfer_id, IPPS_CALLBACK_SECRET, now)
        off_list = await client.post(strict.url("/v1/webhooks/ipps"), content=body, headers=headers)
        strict.popen.terminate()
    assert (forged.status_code, forged.json()["code"]) == (401, "invalid_signature")
    assert (stale.status_code, stale.json()["code"]) == (401, "invalid_signature")
    assert (off_list.status_code, off_list.json()["code"]) == (403, "forbidden_source")
    await asyncio.sleep(1.0)  # time for a hint to be credited, were one passed on
    assert await refund_row(psp, refund["refund_id"]) is None
    assert await refunds_of(psp, withdrawal) == []
    assert (await thb_balance(admin, payer)).posted == 90_000


async def test_a_refund_of_a_transfer_pm_never_made_is_an_alert_not_a_credit(
    psp: Psp, ipps: httpx.AsyncClient
) -> None:
    # A payout someone else made through the same IPPS account (its key is none of ours).
    asked = {"amount": 7_000, "proxy_type": "MSISDN", "proxy_value": MOBILE}
    inquiry = (await ipps.post("/v1/inquiry", json=asked)).json()
    confirm = {"inquiry_id": inquiry["inquiry_id"], "amount": 7_000}
    key = f"elsewhere-{uuid.uuid4().hex}"
    made = await ipps.post("/v1/transfers", json=confirm, headers={"Idempotency-Key": key})
    refund = await send_back(ipps, made.json()["transfer_id"])

    row = await decided(psp, refund["refund_id"])
    assert (row["status"], row["refund_intent_id"], row["original_intent_id"]) == ("UNMATCHED", None, None)
    found = await alert(psp, refund["refund_id"])
    assert found is not None and found["status"] == "OPEN"
    assert json.loads(found["detail"])["transferId"] == made.json()["transfer_id"]
    credited = await fetch(
        psp.saga.database_url,
        "SELECT id FROM pm.intent WHERE idempotency_key = $1",
        f"ipps-refund:{refund['refund_id']}",
    )
    assert credited == []


async def test_returns_adding_up_to_more_than_the_payout_credit_at_most_the_payout(
    psp: Psp, admin: PMClient, ipps: httpx.AsyncClient
) -> None:
    payer, withdrawal, transfer_id = await settled_withdrawal(admin, psp, "over", 10_000)
    six = await send_back(ipps, transfer_id, amount=6_000)
    assert (await decided(psp, six["refund_id"]))["status"] == "CREDITED"
    four = await send_back(ipps, transfer_id, amount=4_000)
    assert (await decided(psp, four["refund_id"]))["status"] == "CREDITED"
    # The bank sends back 500 more than it ever received: never credited.
    excess = await send_back(ipps, transfer_id, amount=500, allow_excess=True)

    row = await decided(psp, excess["refund_id"])
    assert row["status"] == "UNMATCHED" and "refund_exceeds_original" in row["detail"]
    found = await alert(psp, excess["refund_id"])
    assert found is not None and str(found["intent_id"]) == withdrawal

    async def settled() -> bool:
        return [m["state"] for m in await refunds_of(psp, withdrawal)] == ["SETTLED", "SETTLED"]

    await eventually(settled, timeout=30, what="the two refunds settled")
    assert [m["amount"] for m in await refunds_of(psp, withdrawal)] == [4_000, 6_000]
    assert (await thb_balance(admin, payer)).posted == 100_000
