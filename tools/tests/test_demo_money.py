"""`pm demo`'s plan and its money checks on fabricated outcomes and ledger sums: the merchant's part of
the plan, what the settled intents leave on each wallet and on the merchant's account, and the
problems a wrong fee, an unexpected answer or a ledger that does not add up become. No processes: the
runs against a real fleet are tests/test_demo.py."""

from __future__ import annotations

import asyncio
import random
import uuid

import msgspec
import pytest

from pm_client import api
from pm_tools import demo
from pm_tools.demo.ledger_check import BelowZero, LedgerCheck, LedgerTotals, MerchantCheck
from pm_tools.demo.merchant import SHOP, merchant_funding, merchant_plan
from pm_tools.demo.plan import funding, plan
from pm_tools.demo.summary import expected_balances, party_moves, problems


def settled(p: demo.Planned, fees: dict[str, int] | None = None, state: str = "SETTLED") -> demo.Outcome:
    """An outcome whose intent ended as `state` with `fees` (rule id → amount)."""
    intent = msgspec.convert(
        {
            "id": str(uuid.uuid4()),
            "status": state,
            "type": p.type,
            "amount": p.amount,
            "currency": "THB",
            "from": {"kind": "operator"},
            "to": {"kind": "operator"},
            "fees": [
                {"ruleId": rule, "ruleVersion": 1, "amount": fee, "currency": "THB", "timing": "POST"}
                for rule, fee in (fees or {}).items()
            ],
            "links": {"self": "/v1/intents/x"},
        },
        api.Intent,
    )
    return demo.Outcome(p, intent=intent)


def test_the_merchant_plans_credits_to_funded_users_and_one_of_each_charge_fault() -> None:
    options = demo.DemoOptions(users=6, payments=10, credits=4, charges=6, seed=1)
    rng = random.Random(1)
    users, payments, _ghost = plan(options, "r", rng)
    business = merchant_plan(options, "r", rng, users)
    credits_, charges = ([p for p in business if p.type == t] for t in ("MINIAPP_CREDIT", "MINIAPP_CHARGE"))
    assert len(credits_) == 4 and len(charges) == 6
    assert all(p.payer == SHOP and isinstance(p.payee, demo.User) and p.payee.funded for p in credits_)
    assert sorted(p.scenario for p in charges) == [
        "charge",
        "charge",
        "charge",
        "charge-unfunded",
        "declined",
        "over-cap",
    ]
    for p in charges:
        assert p.payee == SHOP and isinstance(p.payer, demo.User)
        assert p.payer.funded == (p.scenario != "charge-unfunded")
        assert (p.amount > demo.MAX_CHARGE) == (p.scenario == "over-cap")
    # The merchant is funded for its credits; each user for its payments and its charges.
    float_ = merchant_funding(business, "r", rng)
    assert (float_.payee, float_.payer) == (SHOP, None)
    assert float_.amount > sum(p.amount for p in credits_)
    fundings = {
        f.payee.id: f.amount
        for f in funding(users, payments + business, "r", rng)
        if isinstance(f.payee, demo.User)
    }
    for user in (u for u in users if u.funded):
        pays = [p for p in payments + charges if p.payer == user and p.scenario in ("settles", "charge")]
        assert fundings[user.id] > sum(p.amount for p in pays)
    # Fewer than four charges: all of them settle.
    few = merchant_plan(demo.DemoOptions(users=4, charges=3), "r", random.Random(2), users)
    assert {p.scenario for p in few} == {"charge"}


def test_the_commission_comes_off_the_merchant_and_the_users_pay_only_the_charge() -> None:
    alice = demo.User("demo-r-000", "Alice", funded=True)
    fund = demo.Planned("k0", "merchant-funding", "ADJUSTMENT", 10_000, None, SHOP)
    charge = demo.Planned("k1", "charge", "MINIAPP_CHARGE", 20_000, alice, SHOP)
    credit = demo.Planned("k2", "credit", "MINIAPP_CREDIT", 3_000, SHOP, alice)
    refused = demo.Planned("k3", "over-cap", "MINIAPP_CHARGE", demo.MAX_CHARGE + 1, alice, SHOP)
    outcomes = [
        settled(fund),
        settled(charge, {demo.COMMISSION_RULE: demo.commission(20_000)}),
        settled(credit),
        demo.Outcome(refused, refused="over_miniapp_cap"),
    ]
    moves = party_moves(outcomes, "THB")
    assert demo.commission(20_000) == 300
    assert moves == {(SHOP.id, "THB"): 10_000 + 20_000 - 300 - 3_000, (alice.id, "THB"): -20_000 + 3_000}
    assert expected_balances([(alice.id, "THB")], outcomes, "THB") == {(alice.id, "THB"): -17_000}
    assert problems(outcomes, []) == []
    # A commission other than the rule's, an expected refusal that did not come: both problems.
    wrong = settled(charge, {demo.COMMISSION_RULE: 299})
    accepted = demo.Outcome(refused, error="HTTP 201: not refused")
    found = problems([wrong, accepted], [])
    assert len(found) == 2 and "fees {'demo-miniapp-commission': 299}" in found[0] and "k3" in found[1]


def test_the_ledger_check_names_what_does_not_add_up() -> None:
    fine = LedgerTotals("THB", 764, 3, 500, 500, 20, 20)
    lost = LedgerTotals("RUB", 643, 3, 500, 499, 0, 0)
    held = LedgerTotals("USD", 840, 2, 0, 0, 7, 0)
    overdrawn = BelowZero(0xABC, "merchant account", "THB", -1, 0)
    check = LedgerCheck("embedded+postgresql://…", [fine, lost, held], [overdrawn])
    found = check.problems()
    assert not check.ok and len(found) == 3
    assert "RUB (643)" in found[0] and "USD (840)" in found[1]
    assert "merchant account 0xabc (THB) below zero" in found[2]
    merchant = MerchantCheck(demo.DEMO_MERCHANT, "THB", 1, before=1_000, after=1_500, pending=0, moved=500)
    assert LedgerCheck("x", [fine], [], merchant=merchant).ok
    off = MerchantCheck(demo.DEMO_MERCHANT, "THB", 1, before=1_000, after=1_499, pending=0, moved=500)
    (problem,) = LedgerCheck("x", [fine], [], merchant=off).problems()
    assert "merchant account of pm-demo-shop" in problem and "expected posted 1500" in problem
    # The ledger's problems are the run's problems.
    assert problems([], [], LedgerCheck("x", [lost], [])) == [LedgerCheck("x", [lost], []).problems()[0]]


def test_withdrawals_are_thb_only_and_charges_need_a_door() -> None:
    with pytest.raises(demo.DemoError, match="PromptPay withdrawals pay THB") as refused:
        demo.DemoOptions(currency="USD", withdrawals=1).check()
    assert refused.value.exit_code == 2
    with pytest.raises(demo.DemoError, match="answer for the users") as doorless:
        asyncio.run(demo.run_demo("http://127.0.0.1:1", "pk_x", "x", demo.DemoOptions(charges=1)))
    assert doorless.value.exit_code == 2
