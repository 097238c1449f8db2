"""pm-adapter-ipps's refund intake: a hint announcing a refund is checked with IPPS's refund status API,
recorded in `pm.psp_refund`, and credited as one REFUND intent per refund id, or raised as a
`psp_refund_unmatched` alert. The adapter and the IPPS sandbox run as real processes (conftest.py);
the withdrawals refunded are written straight into `pm.intent` and `pm.psp_tx_map` as the saga leaves
a settled one (the whole fleet: tests/test_psp_refunds.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from pm_adapter_ipps.refunds import idempotency_key, refund_intent_id
from pm_shared import db
from pm_shared.messages import PspHint, new_message_id, now, psp_key
from pm_tools.testing.fixtures import eventually

pytestmark = pytest.mark.slow

Start = Callable[..., Awaitable[str]]
Publish = Callable[[Any], Awaitable[None]]
FRONT_DOOR = "pk_000000000000000000000000"

INSERT_WITHDRAWAL = """
INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, failure_code, amount,
                       currency, source, target)
VALUES ($1, $2, $3, '\\x00', 'PROMPTPAY_WITHDRAWAL', $4, CASE WHEN $4 = 'FAILED' THEN 'PSP_DECLINED' END,
        $5, 'THB', $6::jsonb, '{"kind": "promptpay", "proxyType": "MSISDN", "proxyValue": "0812345678"}')
"""
PAYEE = {"kind": "promptpay", "proxyType": "MSISDN", "proxyValue": "0812345678"}
INSERT_ATTEMPT = """
INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount, currency,
                           phase, status, psp_transfer_id, psp_status)
VALUES ($1, 'ipps', 'payout', $2, $3, $4, 'THB', 'final', 'SUCCEEDED', $5, 'SUCCESS')
"""


@dataclass
class Ipps:
    url: str
    database_url: str
    publish: Publish

    async def transfer(self, amount: int, key: str) -> str:
        """A transfer IPPS made under `key`; its id."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            body = {"amount": amount, "proxy_type": "MSISDN", "proxy_value": "0812345678"}
            inquiry = (await http.post("/v1/inquiry", json=body)).json()
            confirm = {"inquiry_id": inquiry["inquiry_id"], "amount": amount}
            made = await http.post("/v1/transfers", json=confirm, headers={"Idempotency-Key": key})
        assert made.status_code == 201, made.text
        transfer_id: str = made.json()["transfer_id"]
        return transfer_id

    async def withdrawal(self, amount: int, state: str = "SETTLED") -> tuple[str, str]:
        """A withdrawal of ours that IPPS paid, as the saga leaves it; (its intent id, IPPS's transfer id)."""
        intent_id = str(uuid.uuid4())
        key = psp_key(intent_id, "psp_payout")
        transfer_id = await self.transfer(amount, key)
        payer = {"kind": "user", "id": f"payer-{intent_id[:8]}"}
        await self.sql(
            INSERT_WITHDRAWAL, uuid.UUID(intent_id), FRONT_DOOR, key, state, amount, json.dumps(payer)
        )
        await self.sql(INSERT_ATTEMPT, intent_id, key, new_message_id(), amount, transfer_id)
        return intent_id, transfer_id

    async def send_back(self, transfer_id: str, **body: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            made = await http.post(f"/_sim/transfers/{transfer_id}/return", json={"callback": "hold", **body})
        assert made.status_code == 201, made.text
        refund: dict[str, Any] = made.json()
        return refund

    async def notify(self, refund_id: str, key: str = "", transfer_id: str = "") -> None:
        """A hint as the gateway makes it of a `transfer.returned` callback (a new event each time)."""
        await self.publish(
            PspHint(
                intent_id="",
                message_id=new_message_id(),
                produced_at=now(),
                psp="ipps",
                idempotency_key=key or None,
                psp_reference=transfer_id or None,
                claimed_status="COMPLETED",
                event_id=f"refund:evt_{uuid.uuid4().hex}",
                refund_id=refund_id,
            )
        )

    async def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        conn = await db.connect(self.database_url)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    async def refund_row(self, refund_id: str) -> dict[str, Any] | None:
        rows = await self.sql("SELECT * FROM pm.psp_refund WHERE psp = 'ipps' AND refund_id = $1", refund_id)
        return rows[0] if rows else None

    async def decided(self, refund_id: str, timeout: float = 10) -> dict[str, Any]:
        async def done() -> bool:
            row = await self.refund_row(refund_id)
            return row is not None and row["status"] != "RECEIVED"

        await eventually(done, timeout=timeout, what=f"refund {refund_id} decided")
        row = await self.refund_row(refund_id)
        assert row is not None
        return row

    async def refunds_of(self, intent_id: str) -> list[dict[str, Any]]:
        return await self.sql(
            "SELECT id, key_id, idempotency_key, amount, currency, source, target, state FROM pm.intent"
            " WHERE original_intent_id = $1 AND type = 'REFUND' ORDER BY amount",
            uuid.UUID(intent_id),
        )

    async def alert(self, refund_id: str) -> dict[str, Any] | None:
        rows = await self.sql(
            "SELECT * FROM pm.reconciliation_alert WHERE kind = 'psp_refund_unmatched' AND subject = $1",
            f"ipps:{refund_id}",
        )
        assert len(rows) <= 1
        return rows[0] if rows else None


@pytest.fixture
async def ipps(stack: Start, database_url: str, publish: Publish) -> AsyncIterator[Ipps]:
    url = await stack(PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="300")
    yield Ipps(url, database_url, publish)


async def test_each_refund_is_credited_once_however_often_and_in_whatever_order_it_is_notified(
    ipps: Ipps,
) -> None:
    intent_id, transfer_id = await ipps.withdrawal(10_000)
    first = await ipps.send_back(transfer_id, amount=4_000)
    second = await ipps.send_back(transfer_id, amount=6_000)
    # The second refund's notice first; the first's three times (the gateway passes each new event on).
    await ipps.notify(second["refund_id"])
    for _ in range(3):
        await ipps.notify(first["refund_id"], transfer_id=transfer_id)

    rows = [await ipps.decided(r["refund_id"]) for r in (first, second)]
    assert [(r["status"], r["amount"], r["currency"].strip()) for r in rows] == [
        ("CREDITED", 4_000, "THB"),
        ("CREDITED", 6_000, "THB"),
    ]
    assert all(r["original_intent_id"] == uuid.UUID(intent_id) for r in rows)
    assert [r["refund_intent_id"] for r in rows] == [
        refund_intent_id(first["refund_id"]),
        refund_intent_id(second["refund_id"]),
    ]
    made = await ipps.refunds_of(intent_id)
    assert [(m["amount"], m["state"], m["key_id"]) for m in made] == [
        (4_000, "CREATED", "pk_000000000000000000000001"),
        (6_000, "CREATED", "pk_000000000000000000000001"),
    ]
    assert {m["idempotency_key"] for m in made} == {idempotency_key(r["refund_id"]) for r in (first, second)}
    assert [json.loads(m["source"]) for m in made] == [PAYEE] * 2  # back from the withdrawal's payee
    assert json.loads(made[0]["target"]) == {"kind": "user", "id": f"payer-{intent_id[:8]}"}
    outbox = await ipps.sql(
        "SELECT message_id FROM pm.outbox WHERE intent_id = ANY($1::text[])", [str(m["id"]) for m in made]
    )
    assert sorted(o["message_id"] for o in outbox) == sorted(f"{m['id']}:submitted" for m in made)

    # A notice after the credit is counted, and changes nothing.
    await ipps.notify(first["refund_id"])

    async def counted() -> bool:
        row = await ipps.refund_row(first["refund_id"])
        return row is not None and row["notifications"] == 4

    await eventually(counted, timeout=10, what="the fourth notice counted")
    assert len(await ipps.refunds_of(intent_id)) == 2
    assert await ipps.alert(first["refund_id"]) is None


async def test_what_is_not_a_settled_payout_of_ours_is_an_alert_never_a_credit(ipps: Ipps) -> None:
    intent_id, transfer_id = await ipps.withdrawal(10_000)
    full = await ipps.send_back(transfer_id)
    excess = await ipps.send_back(transfer_id, amount=500, allow_excess=True)  # a bank sending back too much
    stranger = await ipps.send_back(await ipps.transfer(7_000, f"not-ours-{uuid.uuid4().hex}"))
    failed_id, failed_transfer = await ipps.withdrawal(3_000, state="FAILED")
    failed = await ipps.send_back(failed_transfer)
    await ipps.notify(full["refund_id"])
    # Taken in the order PM learns of them: the refund that finds the payout given back already is the
    # excess (had the bank's 500 come first, the 10,000 would be).
    assert (await ipps.decided(full["refund_id"]))["status"] == "CREDITED"
    for refund in (excess, stranger, failed):
        await ipps.notify(refund["refund_id"])
    await ipps.notify("rfd_no_such_refund")
    await ipps.notify("rfd/../../v1/transfers")
    expected = {
        excess["refund_id"]: ("UNMATCHED", "refund_exceeds_original", intent_id),
        stranger["refund_id"]: ("UNMATCHED", "not one PM made", None),
        failed["refund_id"]: ("UNMATCHED", "is FAILED", failed_id),
        "rfd_no_such_refund": ("REJECTED", "no such refund", None),
        "rfd/../../v1/transfers": ("REJECTED", "not an IPPS refund id", None),
    }
    for refund_id, (status, why, original) in expected.items():
        row = await ipps.decided(refund_id)
        assert row["status"] == status and why in row["detail"], row
        assert row["refund_intent_id"] is None
        alert = await ipps.alert(refund_id)
        assert alert is not None and alert["status"] == "OPEN", refund_id
        assert alert["intent_id"] == original and why in json.loads(alert["detail"])["why"]
    assert [r["amount"] for r in await ipps.refunds_of(intent_id)] == [10_000]
    assert await ipps.refunds_of(failed_id) == []
    # Notified again: still one alert each, nothing credited.
    await ipps.notify(excess["refund_id"])

    async def counted() -> bool:
        row = await ipps.refund_row(excess["refund_id"])
        return row is not None and row["notifications"] == 2

    await eventually(counted, timeout=10, what="the second notice counted")
    assert (await ipps.alert(excess["refund_id"]) or {}).get("occurrences") == 1
    assert [r["amount"] for r in await ipps.refunds_of(intent_id)] == [10_000]


async def test_a_refund_is_kept_until_ipps_answers_and_its_payout_has_ended(ipps: Ipps) -> None:
    intent_id, transfer_id = await ipps.withdrawal(5_000, state="AUTHORIZED")
    refund = await ipps.send_back(transfer_id)
    async with httpx.AsyncClient(base_url=ipps.url, timeout=10) as http:
        await http.post("/_sim/outage", json={"requests": 3})  # IPPS down for the next three reads
    await ipps.notify(refund["refund_id"])

    async def waiting() -> bool:
        row = await ipps.refund_row(refund["refund_id"])
        return row is not None and "AUTHORIZED" in (row["detail"] or "")

    # IPPS answers at last (the hint delivered again, or the sweep); the payout is still under way.
    await eventually(waiting, timeout=15, what="IPPS read, the payout waited for")
    assert (await ipps.refund_row(refund["refund_id"]) or {})["status"] == "RECEIVED"
    assert await ipps.refunds_of(intent_id) == []
    await ipps.sql("UPDATE pm.intent SET state = 'SETTLED' WHERE id = $1", uuid.UUID(intent_id))
    # No new notice: the sweep decides it.
    assert (await ipps.decided(refund["refund_id"]))["status"] == "CREDITED"
    assert [r["amount"] for r in await ipps.refunds_of(intent_id)] == [5_000]
