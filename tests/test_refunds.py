"""Refunds of merchant charges end to end (gateway, orchestrator, ledger-writer as processes, on a
database of this module's own; docs/refunds.md): a merchant gives back a charge its user confirmed,
all at once or in parts that never add up to more than the charge — not even when ten race for it
over real HTTP. Refusals (an unsettled or failed charge, another merchant's, parties or currency that
do not mirror the charge, an Idempotency-Key reused) change nothing. The user's history shows each
refund beside its charge.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pm_client import api as http_api
from pm_client.client import PMAuth
from pm_shared import db
from pm_shared.intents import legs
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.reconciliation import checker
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.saga import (
    CURRENCY,
    SagaFleet,
    accounts,
    admin_post,
    fee_revenue,
    fetch,
    fund,
    module_saga,
    open_wallet,
    posted,
    settle_rules,
    transfers,
    wallet_id,
)

pytestmark = pytest.mark.slow

WAIT = {"Prefer": "wait=20"}


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    with module_saga(Path(tmp_path_factory.mktemp("refunds"))) as running:
        yield running


@dataclass
class Shop:
    merchant_id: str
    http: httpx.AsyncClient
    """Signed with the merchant's own key."""

    @property
    def account(self) -> int:
        return ids.account_id(
            "merchant", self.merchant_id, chart.ledger_of(CURRENCY), int(chart.Code.MERCHANT)
        )


async def onboard(saga: SagaFleet) -> tuple[str, str, str]:
    """A merchant with a mini-app that charges (up to 50,000): its id, key id and secret."""
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    async with saga.http(saga.admin) as admin:
        made = await admin.post(
            "/v1/admin/merchants",
            json={"merchantId": merchant_id, "name": f"Shop {merchant_id}", "currencies": [CURRENCY]},
            headers={"Idempotency-Key": f"onboard-{merchant_id}"},
        )
        assert made.status_code == 201, made.text
        app = await admin.post(
            "/v1/admin/miniapps",
            json={
                "miniappId": f"{merchant_id}-app",
                "merchantId": merchant_id,
                "name": "Shop",
                "operations": ["MINIAPP_CHARGE"],
                "maxCharge": {CURRENCY: 50_000},
            },
        )
        assert app.status_code == 201, app.text
    return merchant_id, made.json()["keyId"], made.json()["secret"]


@pytest.fixture
async def shop(saga: SagaFleet) -> AsyncIterator[Shop]:
    merchant_id, key_id, secret = await onboard(saga)
    async with httpx.AsyncClient(base_url=saga.url, auth=PMAuth(key_id, secret), timeout=40.0) as http:
        yield Shop(merchant_id, http)


async def new_user(saga: SagaFleet, funds: int) -> str:
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with saga.client(saga.admin) as pm:
        await open_wallet(pm, user)
        if funds:
            await fund(pm, user, funds)
    return user


def front_door(user: str) -> dict[str, str]:
    return {"X-PM-User": user, "X-PM-Proxy-Secret": PROXY_SECRET}


async def confirmed_charge(saga: SagaFleet, shop: Shop, user: str, amount: int) -> str:
    """A payment request of `shop` that `user` confirms: the MINIAPP_CHARGE's id (not waited for)."""
    asked = await shop.http.post(
        "/v1/payment-requests",
        json={"miniappId": f"{shop.merchant_id}-app", "userId": user, "amount": amount, "currency": CURRENCY},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert asked.status_code == 201, asked.text
    async with httpx.AsyncClient(base_url=saga.url, timeout=40.0) as http:
        confirmed = await http.post(
            f"/v1/me/payment-requests/{asked.json()['id']}/confirm", headers=front_door(user)
        )
    assert confirmed.status_code == 202, confirmed.text
    charge_id: str = confirmed.json()["id"]
    return charge_id


async def settled_charge(saga: SagaFleet, shop: Shop, user: str, amount: int) -> str:
    charge_id = await confirmed_charge(saga, shop, user, amount)
    async with saga.client(saga.admin) as pm:
        charge = await pm.wait_intent(charge_id, timeout=30)
    assert (charge.status, charge.failure_code) == ("SETTLED", None), charge
    return charge_id


def refund_body(shop: Shop, user: str, original: str, amount: int, **changes: Any) -> dict[str, Any]:
    return {
        "type": "REFUND",
        "originalIntentId": original,
        "amount": amount,
        "currency": CURRENCY,
        "from": {"kind": "merchant", "id": shop.merchant_id},
        "to": {"kind": "user", "id": user},
        **changes,
    }


async def send(
    http: httpx.AsyncClient, body: dict[str, Any], key: str | None = None, *, wait: bool = True
) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex, **(WAIT if wait else {})}
    return await http.post("/v1/intents", json=body, headers=headers)


async def refunds_of(saga: SagaFleet, original: str) -> list[dict[str, Any]]:
    return await fetch(
        saga.database_url,
        "SELECT id, state, amount FROM pm.intent WHERE original_intent_id = $1 ORDER BY created_at",
        uuid.UUID(original),
    )


async def balances(saga: SagaFleet, shop: Shop, user: str) -> tuple[int, int]:
    found = await accounts(saga.database_url, [wallet_id(user), shop.account])
    return posted(found[wallet_id(user)]), posted(found[shop.account])


async def reconciled(saga: SagaFleet, intent_ids: list[str]) -> None:
    """The reconciler's check of these intents against the ledger (its legs recomputed) finds nothing."""
    conn = await db.connect(saga.database_url)
    ledger = await open_ledger("embedded+" + saga.database_url, readonly=True)
    try:
        checked = await checker.check(ledger, await checker.load(conn, intent_ids))
    finally:
        await ledger.close()
        await conn.close()
    assert checked.findings == []
    assert sorted(checked.checked) == sorted(intent_ids)


async def test_a_full_refund_goes_back_to_the_payer_and_shows_beside_the_charge(
    saga: SagaFleet, shop: Shop
) -> None:
    user = await new_user(saga, 10_000)
    charge = await settled_charge(saga, shop, user, 2_500)
    assert await balances(saga, shop, user) == (7_500, 2_500)

    made = await send(shop.http, refund_body(shop, user, charge, 2_500, comment="out of stock"))
    assert made.status_code == 202, made.text
    refund = made.json()
    assert (refund["status"], refund["type"], refund["originalIntentId"]) == ("SETTLED", "REFUND", charge)
    assert refund["miniappId"] == f"{shop.merchant_id}-app"  # the charge's
    assert await balances(saga, shop, user) == (10_000, 0)
    # One principal transfer, merchant account -> the user's wallet, with the REFUND code.
    principal = ids.transfer_id(refund["id"], legs.PRINCIPAL)
    moved = (await transfers(saga.database_url, [principal]))[principal]
    assert (moved.debit_account_id, moved.credit_account_id) == (shop.account, wallet_id(user))
    assert (moved.amount, moved.code) == (2_500, legs.TRANSFER_CODES["REFUND"])
    shown = await shop.http.get(f"/v1/intents/{refund['id']}")
    assert shown.json()["originalIntentId"] == charge

    # The user's history, as an admin reads it and through the front door: the refund in, beside
    # the charge out.
    async with saga.http(saga.admin) as admin:
        signed = (await admin.get(f"/v1/wallets/{user}/history?limit=3")).json()["items"]
    async with httpx.AsyncClient(base_url=saga.url, timeout=40.0) as http:
        mine = (await http.get("/v1/me/history?limit=3", headers=front_door(user))).json()["items"]
    want = [
        ("REFUND", "in", 2_500, refund["id"], charge, "out of stock"),
        ("MINIAPP_CHARGE", "out", 2_500, charge, None, None),
    ]
    for items in (signed, mine):
        got = [
            (
                i["type"],
                i["direction"],
                i["amount"],
                i["intentId"],
                i.get("originalIntentId"),
                i.get("comment"),
            )
            for i in items[:2]
        ]
        assert got == want, items


async def test_partial_refunds_add_up_to_the_charge_and_not_one_minor_unit_more(
    saga: SagaFleet, shop: Shop
) -> None:
    user = await new_user(saga, 5_000)
    charge = await settled_charge(saga, shop, user, 3_000)
    for amount in (1_000, 1_500):
        made = await send(shop.http, refund_body(shop, user, charge, amount))
        assert (made.status_code, made.json()["status"]) == (202, "SETTLED"), made.text
    # An admin key may refund any merchant's charge (as the merchant).
    async with saga.http(saga.admin) as admin:
        last = await send(admin, refund_body(shop, user, charge, 500))
    assert (last.status_code, last.json()["status"]) == (202, "SETTLED"), last.text
    before = await balances(saga, shop, user)
    assert before == (5_000, 0)

    over = await send(shop.http, refund_body(shop, user, charge, 1))
    assert (over.status_code, over.json()["code"]) == (409, "refund_exceeds_original"), over.text
    assert "0 THB" in over.json()["detail"]
    assert [(r["state"], r["amount"]) for r in await refunds_of(saga, charge)] == [
        ("SETTLED", 1_000),
        ("SETTLED", 1_500),
        ("SETTLED", 500),
    ]
    assert await balances(saga, shop, user) == before


async def test_a_fee_rule_on_refund_is_priced_and_paid_by_its_payer(saga: SagaFleet, shop: Shop) -> None:
    # A handling fee on this merchant's refunds: 1 % of each, paid by the merchant (the source).
    async with saga.http(saga.admin) as admin:
        rule = http_api.FeeRuleIn(
            rule_id=f"{shop.merchant_id}-refund-fee",
            operation_type="REFUND",
            condition=f'intent.source.kind == "merchant" && intent.source.id == "{shop.merchant_id}"',
            amount="intent.amount / 100",
            timing="PRE",
            payer="source",
            max_fee=10_000,
        )
        await admin_post(admin, "/v1/admin/fee-rules", rule)
    await settle_rules(time.monotonic())
    user = await new_user(saga, 3_000)
    charge = await settled_charge(saga, shop, user, 3_000)
    body = refund_body(shop, user, charge, 1_000)
    priced = await shop.http.post(
        "/v1/fees/dry-run", json={k: v for k, v in body.items() if k != "originalIntentId"}
    )
    assert (priced.status_code, priced.json()["total"]) == (200, 10), priced.text
    revenue_before = await fee_revenue(saga)
    made = await send(shop.http, body)
    assert (made.status_code, made.json()["status"]) == (202, "SETTLED"), made.text
    assert [(f["ruleId"], f["amount"]) for f in made.json()["fees"]] == [
        (f"{shop.merchant_id}-refund-fee", 10)
    ]
    assert await balances(saga, shop, user) == (1_000, 1_990)
    assert await fee_revenue(saga) == revenue_before + 10


async def test_a_charge_not_settled_yet_or_failed_is_not_refunded(saga: SagaFleet, shop: Shop) -> None:
    broke = await new_user(saga, 0)
    failed = await confirmed_charge(saga, shop, broke, 1_000)
    async with saga.client(saga.admin) as pm:
        assert (await pm.wait_intent(failed, timeout=30)).failure_code == "INSUFFICIENT_FUNDS"
    refused = await send(shop.http, refund_body(shop, broke, failed, 1_000))
    assert (refused.status_code, refused.json()["code"]) == (409, "original_not_settled"), refused.text

    # With the orchestrator stopped, a confirmed charge waits in CREATED: not refundable until it settles.
    user = await new_user(saga, 2_000)
    stopped = saga.orchestrator
    stopped.popen.terminate()
    await asyncio.to_thread(stopped.popen.wait, 30)
    try:
        pending = await confirmed_charge(saga, shop, user, 1_200)
        early = await send(shop.http, refund_body(shop, user, pending, 1_200), wait=False)
        assert (early.status_code, early.json()["code"]) == (409, "original_not_settled"), early.text
    finally:
        await saga.start_orchestrator().wait_ready()
    async with saga.client(saga.admin) as pm:
        assert (await pm.wait_intent(pending, timeout=30)).status == "SETTLED"
    later = await send(shop.http, refund_body(shop, user, pending, 1_200))
    assert (later.status_code, later.json()["status"]) == (202, "SETTLED"), later.text
    assert await refunds_of(saga, failed) == []


async def test_another_merchants_charge_is_not_found(saga: SagaFleet, shop: Shop) -> None:
    user = await new_user(saga, 1_000)
    charge = await settled_charge(saga, shop, user, 400)
    other_id, key_id, secret = await onboard(saga)
    async with httpx.AsyncClient(base_url=saga.url, auth=PMAuth(key_id, secret), timeout=40.0) as http:
        other = Shop(other_id, http)
        # As if it did not exist, whether the request names the other merchant's account or its own.
        for body in (refund_body(other, user, charge, 400), refund_body(other, user, str(uuid.uuid4()), 1)):
            hidden = await send(other.http, body)
            assert (hidden.status_code, hidden.json()["code"]) == (404, "original_not_found"), hidden.text
        theirs = await send(other.http, refund_body(shop, user, charge, 400))
        assert (theirs.status_code, theirs.json()["code"]) == (403, "forbidden_merchant"), theirs.text
    # A key that is neither a merchant's nor an admin's refunds nothing.
    async with saga.http(saga.user) as plain:
        nobody = await send(plain, refund_body(shop, user, charge, 400))
    assert nobody.status_code == 403, nobody.text
    assert await refunds_of(saga, charge) == []


async def test_parties_and_currency_must_mirror_the_charge(saga: SagaFleet, shop: Shop) -> None:
    user = await new_user(saga, 1_000)
    charge = await settled_charge(saga, shop, user, 600)
    stranger = await new_user(saga, 0)
    cases = {
        "refund_parties_mismatch": refund_body(shop, stranger, charge, 100),
        "refund_currency_mismatch": refund_body(shop, user, charge, 100, currency="USD"),
    }
    for code, body in cases.items():
        refused = await send(shop.http, body)
        assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    kinds = await send(shop.http, refund_body(shop, user, charge, 100, to={"kind": "operator"}))
    assert (kinds.status_code, kinds.json()["code"]) == (422, "invalid_parties"), kinds.text
    # Only charges (and payouts sent back) are refunded: not the ADJUSTMENT that funded the user.
    funding = (await fetch(
        saga.database_url,
        "SELECT id FROM pm.intent WHERE type = 'ADJUSTMENT' AND target @> $1::jsonb",
        f'{{"kind": "user", "id": "{user}"}}',
    ))[0]["id"]  # fmt: skip
    async with saga.http(saga.admin) as admin:
        other = await send(admin, refund_body(shop, user, str(funding), 100))
    assert (other.status_code, other.json()["code"]) == (422, "original_not_refundable"), other.text
    assert await refunds_of(saga, charge) == []


async def test_an_idempotency_key_makes_one_refund(saga: SagaFleet, shop: Shop) -> None:
    user = await new_user(saga, 1_000)
    charge = await settled_charge(saga, shop, user, 800)
    body = refund_body(shop, user, charge, 800)
    first = await send(shop.http, body, "refund-1")
    again = await send(shop.http, body, "refund-1")
    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert first.json()["id"] == again.json()["id"]
    # The replay is answered even though nothing is left to refund now.
    assert again.headers["Idempotent-Replayed"] == "true"
    reused = await send(shop.http, {**body, "amount": 1}, "refund-1")
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused"), reused.text
    assert [r["amount"] for r in await refunds_of(saga, charge)] == [800]


async def test_racing_partial_refunds_never_add_up_to_more_than_the_charge(
    saga: SagaFleet, shop: Shop
) -> None:
    user = await new_user(saga, 10_000)
    charge = await settled_charge(saga, shop, user, 10_000)
    answers = await asyncio.gather(
        *(send(shop.http, refund_body(shop, user, charge, 3_000), wait=False) for _ in range(10))
    )
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    refused = [a.json()["code"] for a in answers if a.status_code != 202]
    assert len(accepted) <= 3
    assert set(refused) <= {"refund_exceeds_original"}
    assert len(accepted) + len(refused) == 10
    async with saga.client(saga.admin) as pm:
        done = [await pm.wait_intent(i, timeout=30) for i in accepted]
    settled = sum(r.amount for r in done if r.status == "SETTLED")
    assert settled <= 10_000
    assert settled == 9_000, done  # the merchant holds the whole charge: each accepted one settles
    # The ledger agrees: the user got back exactly what settled, the merchant paid it.
    assert await balances(saga, shop, user) == (settled, 10_000 - settled)
    async with saga.client(saga.admin) as pm:
        wallet = await pm.get_wallet(user)
    assert [(b.currency, b.posted) for b in wallet.balances] == [(CURRENCY, settled)]
    await reconciled(saga, [charge, *accepted])
