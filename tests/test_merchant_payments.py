"""Merchants' money end to end (gateway, orchestrator, ledger-writer as processes, on a database of this
module's own): an admin onboards a merchant and funds its account with an ADJUSTMENT; the merchant's
key credits a user through its mini-app (MINIAPP_CREDIT), and cannot credit more than its account
holds. Every combination a merchant's key may not make is a 403 with its own code, and changes nothing.
A deactivated merchant's accounts close (balance to the suspense account, every transfer refused) and
reopen with the balance back. End users, through the front door's headers: a confirmed charge, and a
payment from their own wallet.
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
import tigerbeetle as tb

from pm_client import api as http_api
from pm_client.client import PMAuth
from pm_shared.ledger import chart, ids
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.saga import (
    CURRENCY,
    SagaFleet,
    accounts,
    admin_post,
    fee_revenue,
    fund,
    module_saga,
    open_wallet,
    posted,
    run_intent,
    settle_rules,
    wallet_id,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    with module_saga(Path(tmp_path_factory.mktemp("merchants"))) as running:
        yield running


@dataclass
class Shop:
    merchant_id: str
    miniapp_id: str
    http: httpx.AsyncClient
    """Signed with the merchant's own key."""


def merchant_account(merchant_id: str) -> int:
    return ids.account_id("merchant", merchant_id, chart.ledger_of(CURRENCY), int(chart.Code.MERCHANT))


async def onboard(admin: httpx.AsyncClient, merchant_id: str, operations: list[str]) -> tuple[str, str]:
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
            "name": "Rewards",
            "operations": operations,
            "maxCharge": {CURRENCY: 50_000},
        },
    )
    assert app.status_code == 201, app.text
    return made.json()["keyId"], made.json()["secret"]


@pytest.fixture
async def shop(saga: SagaFleet) -> AsyncIterator[Shop]:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    async with saga.http(saga.admin) as admin:
        key_id, secret = await onboard(admin, merchant_id, ["MINIAPP_CREDIT"])
    async with httpx.AsyncClient(base_url=saga.url, auth=PMAuth(key_id, secret), timeout=40.0) as http:
        yield Shop(merchant_id, f"{merchant_id}-app", http)


def credit(shop: Shop, user: str, amount: int, **changes: Any) -> dict[str, Any]:
    return {
        "type": "MINIAPP_CREDIT",
        "amount": amount,
        "currency": CURRENCY,
        "from": {"kind": "merchant", "id": shop.merchant_id},
        "to": {"kind": "user", "id": user},
        "miniappId": shop.miniapp_id,
        **changes,
    }


async def submit(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/v1/intents", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


async def follow(saga: SagaFleet, shop: Shop, body: dict[str, Any]) -> http_api.Intent:
    created = await submit(shop.http, body)
    assert created.status_code == 202, created.text
    async with saga.client(saga.admin) as pm:
        return await pm.wait_intent(created.json()["id"], timeout=30)


async def test_a_funded_merchant_credits_a_user_and_never_more_than_it_holds(
    saga: SagaFleet, shop: Shop
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with saga.client(saga.admin) as admin:
        await open_wallet(admin, user)
        funding = http_api.CreateIntent(
            type="ADJUSTMENT",
            amount=10_000,
            currency=CURRENCY,
            from_=http_api.OperatorParty(),
            to=http_api.MerchantParty(id=shop.merchant_id),
        )
        funded = await run_intent(admin, funding)
        assert (funded.status, funded.failure_code) == ("SETTLED", None), funded

    paid = await follow(saga, shop, credit(shop, user, 3_000))
    assert (paid.status, paid.type, paid.miniapp_id) == ("SETTLED", "MINIAPP_CREDIT", shop.miniapp_id), paid
    found = await accounts(saga.database_url, [merchant_account(shop.merchant_id), wallet_id(user)])
    assert posted(found[merchant_account(shop.merchant_id)]) == 7_000
    assert posted(found[wallet_id(user)]) == 3_000

    too_much = await follow(saga, shop, credit(shop, user, 7_001))
    assert (too_much.status, too_much.failure_code) == ("FAILED", "INSUFFICIENT_FUNDS"), too_much
    found = await accounts(saga.database_url, [merchant_account(shop.merchant_id), wallet_id(user)])
    assert posted(found[merchant_account(shop.merchant_id)]) == 7_000
    assert posted(found[wallet_id(user)]) == 3_000
    assert found[merchant_account(shop.merchant_id)].debits_pending == 0


async def test_every_combination_a_merchant_key_may_not_make_is_403(saga: SagaFleet, shop: Shop) -> None:
    other_id = f"m-{uuid.uuid4().hex[:8]}"
    async with saga.http(saga.admin) as admin:
        await onboard(admin, other_id, ["MINIAPP_CHARGE"])
        refusals: dict[str, tuple[httpx.AsyncClient, dict[str, Any]]] = {
            "forbidden_merchant": (
                shop.http,
                credit(shop, "u-1", 100, **{"from": {"kind": "merchant", "id": other_id}}),
            ),
            "forbidden_miniapp": (shop.http, credit(shop, "u-1", 100, miniappId=f"{other_id}-app")),
            "charge_needs_consent": (
                shop.http,
                credit(
                    shop,
                    "u-1",
                    100,
                    type="MINIAPP_CHARGE",
                    **{
                        "from": {"kind": "user", "id": "u-1"},
                        "to": {"kind": "merchant", "id": shop.merchant_id},
                    },
                ),
            ),
            "merchant_key_required": (admin, credit(shop, "u-1", 100)),
        }
        for code, (client, body) in refusals.items():
            response = await submit(client, body)
            assert (response.status_code, response.json()["code"]) == (403, code), response.text
        p2p = {
            "type": "P2P",
            "amount": 100,
            "currency": CURRENCY,
            "from": {"kind": "user", "id": "u-1"},
            "to": {"kind": "user", "id": "u-2"},
        }
        refused = await submit(shop.http, p2p)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden_operation")

        # A mini-app of this merchant that only charges (capped at 50,000): no credit through it, and
        # a charge over its cap is refused (asked as a dry run: a charge itself needs the user).
        charges_only = {
            "miniappId": f"{shop.merchant_id}-shop",
            "merchantId": shop.merchant_id,
            "name": "Shop",
            "operations": ["MINIAPP_CHARGE"],
            "maxCharge": {CURRENCY: 50_000},
        }
        assert (await admin.post("/v1/admin/miniapps", json=charges_only)).status_code == 201
        not_granted = await submit(shop.http, credit(shop, "u-1", 100, miniappId=f"{shop.merchant_id}-shop"))
        assert (not_granted.status_code, not_granted.json()["code"]) == (403, "miniapp_operation_not_allowed")
        charge = {
            "type": "MINIAPP_CHARGE",
            "amount": 50_001,
            "currency": CURRENCY,
            "from": {"kind": "user", "id": "u-1"},
            "to": {"kind": "merchant", "id": shop.merchant_id},
            "miniappId": f"{shop.merchant_id}-shop",
        }
        capped = await shop.http.post("/v1/fees/dry-run", json=charge)
        assert (capped.status_code, capped.json()["code"]) == (403, "over_miniapp_cap"), capped.text
        within = await shop.http.post("/v1/fees/dry-run", json={**charge, "amount": 50_000})
        assert within.status_code == 200, within.text

        # The other merchant's mini-app does charges only; this one's is deactivated next.
        async with saga.http(saga.admin) as admin2:
            off = await admin2.post(f"/v1/admin/miniapps/{shop.miniapp_id}/deactivate")
            assert off.status_code == 200 and off.json()["status"] == "INACTIVE"
        inactive = await submit(shop.http, credit(shop, "u-1", 100))
        assert (inactive.status_code, inactive.json()["code"]) == (403, "miniapp_inactive")

        gone = await admin.post(f"/v1/admin/merchants/{shop.merchant_id}/deactivate")
        assert gone.status_code == 200
        after = await submit(shop.http, credit(shop, "u-1", 100))
        assert (after.status_code, after.json()["code"]) == (401, "auth_inactive_key")


async def test_a_confirmed_charge_pays_the_merchant_less_its_commission(saga: SagaFleet) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with saga.http(saga.admin) as admin:
        key_id, secret = await onboard(admin, merchant_id, ["MINIAPP_CHARGE"])
        # The merchant's commission: 1.5 % of each of its charges, paid by the merchant (the target).
        commission = http_api.FeeRuleIn(
            rule_id=f"{merchant_id}-commission",
            operation_type="MINIAPP_CHARGE",
            condition=f'intent.target.kind == "merchant" && intent.target.id == "{merchant_id}"',
            amount="intent.amount * 15 / 1000",
            timing="POST",
            payer="target",
            max_fee=100_000,
        )
        await admin_post(admin, "/v1/admin/fee-rules", commission)
    await settle_rules(time.monotonic())
    revenue_before = await fee_revenue(saga)
    async with saga.client(saga.admin) as pm:
        await open_wallet(pm, user)
        await fund(pm, user, 10_000)
    async with httpx.AsyncClient(base_url=saga.url, auth=PMAuth(key_id, secret), timeout=40.0) as shop:
        asked = await shop.post(
            "/v1/payment-requests",
            json={"miniappId": f"{merchant_id}-app", "userId": user, "amount": 2_000, "currency": CURRENCY},
            headers={"Idempotency-Key": "lunch"},
        )
        assert asked.status_code == 201, asked.text
    front_door = {"X-PM-User": user, "X-PM-Proxy-Secret": PROXY_SECRET}
    async with httpx.AsyncClient(base_url=saga.url, timeout=40.0) as http:
        confirmed = await http.post(
            f"/v1/me/payment-requests/{asked.json()['id']}/confirm", headers=front_door
        )
    assert confirmed.status_code == 202, confirmed.text
    async with saga.client(saga.admin) as pm:
        charge = await pm.wait_intent(confirmed.json()["id"], timeout=30)
    assert (charge.status, charge.failure_code) == ("SETTLED", None), charge
    assert [(f.rule_id, f.amount) for f in charge.fees] == [(f"{merchant_id}-commission", 30)]
    found = await accounts(saga.database_url, [merchant_account(merchant_id), wallet_id(user)])
    assert posted(found[wallet_id(user)]) == 8_000
    assert posted(found[merchant_account(merchant_id)]) == 1_970
    assert await fee_revenue(saga) == revenue_before + 30
    # The user sees it through the front door: the wallet, and the charge beside the funding.
    async with httpx.AsyncClient(base_url=saga.url, timeout=40.0) as http:
        wallet = (await http.get("/v1/me/wallets", headers=front_door)).json()
        moves = (await http.get("/v1/me/history?limit=5", headers=front_door)).json()["items"]
    assert [(b["currency"], b["posted"]) for b in wallet["balances"]] == [(CURRENCY, 8_000)]
    assert [(m["type"], m["direction"], m["amount"]) for m in moves][:2] == [
        ("MINIAPP_CHARGE", "out", 2_000),
        ("ADJUSTMENT", "in", 10_000),
    ]


async def test_a_user_pays_from_their_own_wallet_through_the_front_door(saga: SagaFleet) -> None:
    payer, payee = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    async with saga.client(saga.admin) as pm:
        await open_wallet(pm, payer)
        await open_wallet(pm, payee)
        await fund(pm, payer, 5_000)
    body = {"type": "P2P", "amount": 1_200, "currency": CURRENCY, "to": {"kind": "user", "id": payee}}
    headers = {"X-PM-User": payer, "X-PM-Proxy-Secret": PROXY_SECRET, "Idempotency-Key": "dinner"}
    async with httpx.AsyncClient(base_url=saga.url, timeout=40.0) as http:
        made = await http.post("/v1/me/intents", json=body, headers={**headers, "Prefer": "wait=20"})
        assert made.status_code == 202, made.text
        # The payee reads it too (their own movement); both see it settled.
        seen = await http.get(
            made.headers["Location"], headers={"X-PM-User": payee, "X-PM-Proxy-Secret": PROXY_SECRET}
        )
        too_much = await http.post(
            "/v1/me/intents",
            json={**body, "amount": 1_000_000},
            headers={**headers, "Idempotency-Key": "too-much", "Prefer": "wait=20"},
        )
    assert (made.json()["status"], seen.json()["status"]) == ("SETTLED", "SETTLED"), made.text
    assert (too_much.json()["status"], too_much.json()["failureCode"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    found = await accounts(saga.database_url, [wallet_id(payer), wallet_id(payee)])
    assert (posted(found[wallet_id(payer)]), posted(found[wallet_id(payee)])) == (3_800, 1_200)


def suspense() -> int:
    return ids.account_id(
        "operator", "merchant_suspense", chart.ledger_of(CURRENCY), int(chart.Code.MERCHANT_SUSPENSE)
    )


async def test_a_deactivated_merchants_accounts_close_and_reopen_with_their_balance(
    saga: SagaFleet, shop: Shop
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    account = merchant_account(shop.merchant_id)
    base = f"/v1/admin/merchants/{shop.merchant_id}"
    async with saga.client(saga.admin) as pm:
        await open_wallet(pm, user)
        await run_intent(pm, http_api.CreateIntent(
            type="ADJUSTMENT", amount=4_000, currency=CURRENCY,
            from_=http_api.OperatorParty(), to=http_api.MerchantParty(id=shop.merchant_id),
        ))  # fmt: skip
    held_before = posted((await accounts(saga.database_url, [suspense()]))[suspense()])
    async with saga.http(saga.admin) as admin:
        active = await admin.post(f"{base}/close-accounts")
        assert (active.status_code, active.json()["code"]) == (409, "merchant_active")
        assert (await admin.post(f"{base}/deactivate")).status_code == 200
        closed = await admin.post(f"{base}/close-accounts")
        assert (closed.status_code, closed.json()["accountsState"]) == (200, "CLOSED"), closed.text
        again = await admin.post(f"{base}/close-accounts")
        assert (again.status_code, again.json()["accountsState"]) == (200, "CLOSED")
        assert [e["action"] for e in again.json()["events"]].count("accounts_closed") == 1
    found = await accounts(saga.database_url, [account, suspense()])
    assert found[account].flags & tb.AccountFlags.CLOSED
    assert posted(found[account]) == 0
    assert posted(found[suspense()]) == held_before + 4_000
    # Money sent to a closed account fails cleanly: nothing moves.
    async with saga.client(saga.admin) as pm:
        refused = await run_intent(pm, http_api.CreateIntent(
            type="ADJUSTMENT", amount=100, currency=CURRENCY,
            from_=http_api.OperatorParty(), to=http_api.MerchantParty(id=shop.merchant_id),
        ))  # fmt: skip
    assert (refused.status, refused.failure_code) == ("FAILED", "ACCOUNT_CLOSED"), refused

    async with saga.http(saga.admin) as admin:
        reopened = await admin.post(f"{base}/reactivate")
        assert reopened.status_code == 200, reopened.text
        assert (reopened.json()["status"], reopened.json()["accountsState"]) == ("ACTIVE", "OPEN")
    found = await accounts(saga.database_url, [account, suspense()])
    assert not found[account].flags & tb.AccountFlags.CLOSED
    assert (posted(found[account]), posted(found[suspense()])) == (4_000, held_before)
    # The merchant's key works again, and its account pays out what it holds.
    async with saga.client(saga.admin) as pm:
        await open_wallet(pm, user)
    paid = await follow(saga, shop, credit(shop, user, 1_500))
    assert (paid.status, paid.failure_code) == ("SETTLED", None), paid
    assert posted((await accounts(saga.database_url, [account]))[account]) == 2_500


async def test_intents_accepted_before_a_deactivation_finish(saga: SagaFleet, shop: Shop) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with saga.client(saga.admin) as pm:
        await open_wallet(pm, user)
        await run_intent(pm, http_api.CreateIntent(
            type="ADJUSTMENT", amount=2_000, currency=CURRENCY,
            from_=http_api.OperatorParty(), to=http_api.MerchantParty(id=shop.merchant_id),
        ))  # fmt: skip
    # The orchestrator is stopped, so the credit is still only accepted when the merchant goes.
    stopped = saga.orchestrator
    stopped.popen.terminate()
    await asyncio.to_thread(stopped.popen.wait, 30)
    accepted = await submit(shop.http, credit(shop, user, 700))
    assert accepted.status_code == 202, accepted.text
    async with saga.http(saga.admin) as admin:
        assert (await admin.post(f"/v1/admin/merchants/{shop.merchant_id}/deactivate")).status_code == 200
    refused = await submit(shop.http, credit(shop, user, 100))
    assert (refused.status_code, refused.json()["code"]) == (401, "auth_inactive_key")
    await saga.start_orchestrator().wait_ready()
    async with saga.client(saga.admin) as pm:
        done = await pm.wait_intent(accepted.json()["id"], timeout=30)
    assert (done.status, done.failure_code) == ("SETTLED", None), done
    assert posted((await accounts(saga.database_url, [wallet_id(user)]))[wallet_id(user)]) == 700
