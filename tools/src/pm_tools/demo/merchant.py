"""The demo merchant's part of `pm demo`: who it is, its mini-app and commission, and the credits and
charges it plans.

One merchant for every run (`pm-demo-shop`, with its mini-app `pm-demo-app`), onboarded with the same
body each time, so a second run on the same database finds it again rather than failing: its
onboarding is idempotent (`pm_tools.demo.shop`). Its account takes every currency the demo knows. It
is funded by the operator (an ADJUSTMENT) for the credits it makes; its charges pay it, less its
commission: 1.5 % of each charge, paid by the merchant (`demo-miniapp-commission`, a new version
each run, like the demo's other fee rules).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import cast

from pm_client import api, merchant_api
from pm_tools.demo.plan import CURRENCIES, DemoOptions, Merchant, Planned, Scenario, User

DEMO_MERCHANT = "pm-demo-shop"
DEMO_MINIAPP = "pm-demo-app"
SHOP = Merchant(DEMO_MERCHANT, "PM Demo Coffee")
# Every currency the demo knows (DemoOptions.check holds a run to one of them), as the API types them.
_CURRENCIES = [cast(api.Currency, c) for c in CURRENCIES]
COMMISSION_RULE = "demo-miniapp-commission"
COMMISSION_PERMILLE = 15
MAX_CHARGE = 300_000
"""The mini-app's cap on one charge, in every currency (3,000.00)."""
CHARGE_FAULTS: tuple[Scenario, ...] = ("charge-unfunded", "declined", "over-cap")
"""One of each among the charges, from this many charges on (the others settle)."""
FAULTS_FROM = 4

_CASHBACK = ("cashback", "loyalty reward", "refund of a cold coffee", "welcome bonus", "stamp card full")
_ORDERS = ("flat white", "iced latte", "croissant", "beans 250 g", "ชาเย็น", "breakfast set", "")


def commission(amount: int) -> int:
    """The commission the demo rule takes from a charge of `amount` (integer division, as CEL does)."""
    return amount * COMMISSION_PERMILLE // 1000


def commission_rule() -> api.FeeRuleIn:
    """The merchant's commission, as a `POST /v1/admin/fee-rules` body: on its charges only."""
    return api.FeeRuleIn(
        rule_id=COMMISSION_RULE,
        operation_type="MINIAPP_CHARGE",
        condition=f'intent.target.kind == "merchant" && intent.target.id == "{DEMO_MERCHANT}"',
        amount=f"intent.amount * {COMMISSION_PERMILLE} / 1000",
        timing="POST",
        payer="target",
        max_fee=commission(MAX_CHARGE),
        priority=10,
        description=f"pm demo: {COMMISSION_PERMILLE / 10:g}% of each charge of {DEMO_MERCHANT}, paid by it",
    )


def onboarding() -> merchant_api.CreateMerchant:
    """The demo merchant's onboarding body: the same every run (the same body and key is a replay)."""
    return merchant_api.CreateMerchant(merchant_id=DEMO_MERCHANT, name=SHOP.name, currencies=_CURRENCIES)


def miniapp(miniapp_id: str = DEMO_MINIAPP) -> merchant_api.CreateMiniapp:
    """The demo mini-app: credits and charges, each charge at most MAX_CHARGE."""
    return merchant_api.CreateMiniapp(
        miniapp_id=miniapp_id,
        merchant_id=DEMO_MERCHANT,
        name=SHOP.name,
        operations=["MINIAPP_CHARGE", "MINIAPP_CREDIT"],
        max_charge=dict.fromkeys(_CURRENCIES, MAX_CHARGE),
    )


def _minor(rng: random.Random, low: int, high: int) -> int:
    """An amount of `low`..`high` major units, in minor units, with some odd cents."""
    return rng.randint(low, high) * 100 + rng.choice((0, 0, 50, rng.randint(1, 99)))


def merchant_plan(
    options: DemoOptions, run_id: str, rng: random.Random, users: Sequence[User]
) -> list[Planned]:
    """The merchant's credits (to funded users) and charges (see `DemoOptions.charges`), shuffled.

    Credits go to funded users only, so an unfunded wallet stays empty and its charge fails whatever
    the order of sending."""
    funded = [u for u in users if u.funded]
    unfunded = [u for u in users if not u.funded]
    planned = [
        Planned(
            key=f"{run_id}:credit:{k}",
            scenario="credit",
            type="MINIAPP_CREDIT",
            amount=_minor(rng, 5, 300),
            payer=SHOP,
            payee=rng.choice(funded),
            comment=rng.choice(_CASHBACK),
        )
        for k in range(options.credits)
    ]
    faults = list(CHARGE_FAULTS) if options.charges >= FAULTS_FROM else []
    settles: Scenario = "charge"
    scenarios: list[Scenario] = [*faults, *[settles] * (options.charges - len(faults))]
    rng.shuffle(scenarios)
    for k, scenario in enumerate(scenarios):
        planned.append(
            Planned(
                key=f"{run_id}:charge:{k}",
                scenario=scenario,
                type="MINIAPP_CHARGE",
                amount=MAX_CHARGE + 1 if scenario == "over-cap" else _minor(rng, 20, 2_500),
                payer=rng.choice(unfunded if scenario == "charge-unfunded" else funded),
                payee=SHOP,
                comment=rng.choice(_ORDERS),
            )
        )
    rng.shuffle(planned)
    return planned


def merchant_funding(planned: Sequence[Planned], run_id: str, rng: random.Random) -> Planned:
    """The operator's ADJUSTMENT to the merchant: its credits, and some to spare."""
    owed = sum(p.amount for p in planned if p.payer == SHOP)
    return Planned(
        key=f"{run_id}:fund:{DEMO_MERCHANT}",
        scenario="merchant-funding",
        type="ADJUSTMENT",
        amount=owed + rng.randint(100, 2_000) * 100,
        payer=None,
        payee=SHOP,
        comment="pm demo: merchant float",
    )
