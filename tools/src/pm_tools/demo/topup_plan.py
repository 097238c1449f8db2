"""The SBP top-ups `pm demo` plans (docs/fx.md, "SBP top-ups into another currency"): roubles paid
through QP into THB wallets, at a THB/RUB rate the demo sets, the baht paid out of the operator's THB
liquidity, which the demo funds first.

Each run with `topups` (and a QP sandbox to pay in: `pm_tools.demo.topups`):

1. sets a THB/RUB rate (seeded, 2.3 to 2.9 roubles a baht, four decimals) with a 100 bp spread;
2. funds the THB liquidity account (an ADJUSTMENT operator → liquidity) for the baht the top-ups ask,
   and some to spare, so they settle whatever order they happen in;
3. after the other traffic, asks each top-up for an amount in baht into a funded user's THB wallet:
   the gateway prices it in roubles at intake (a quote buying exactly that amount), the QR carries the
   roubles, the demo pays it in the QP sandbox, and the intent settles: the wallet gets exactly the
   baht asked, the THB liquidity pays them, QP clearing pays the principal into the RUB liquidity and
   the spread into RUB fee revenue.

The checks that need no fleet live here too: whether a top-up's intent is what its own rate prices.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from pm_client import api, fx_api
from pm_shared.fx import pricing
from pm_tools.demo.plan import SBP_CURRENCY, DemoOptions, Liquidity, Planned, Sbp, User

PAIR = "THB/RUB"
"""RUB per one THB, as the rate is set (a quote finds it written either way round)."""
HOME: api.Currency = "THB"
"""The wallets' currency (DemoOptions.check: top-ups need a THB run)."""
SPREAD_BPS = 100
SOURCE = "pm demo"
SBP = Sbp()
QR_SCHEME = "qp_qr"
"""The kind of payment an SBP top-up answers with (its link: a qr.nspk.ru URL)."""


def rate_text(rng: random.Random) -> str:
    """A seeded THB/RUB rate as the API takes it: an exact decimal string, never a float."""
    ten_thousandths = rng.randint(23_000, 29_000)
    return f"{ten_thousandths // 10_000}.{ten_thousandths % 10_000:04d}"


def set_rate(rng: random.Random) -> fx_api.SetRate:
    return fx_api.SetRate(pair=PAIR, rate=rate_text(rng), spread_bps=SPREAD_BPS, source=SOURCE)


def price(rate: fx_api.SetRate | api.Exchange, amount: int) -> pricing.Price:
    """What a top-up of `amount` baht costs in roubles at `rate` (the demo's, or an intent's own):
    priced as the gateway prices it, buying exactly the amount."""
    spread = rate.spread_bps
    priced = pricing.Rate(pricing.Pair.parse(rate.pair), Decimal(rate.rate), spread)
    return pricing.buying(priced, SBP_CURRENCY, HOME, amount, amount_max=api.AMOUNT_MAX)


@dataclass(frozen=True)
class TopupPlan:
    """One run's top-ups: the rate it sets, the THB liquidity funded first, then the top-ups."""

    rate: fx_api.SetRate
    fundings: list[Planned]
    topups: list[Planned]


def topup_plan(
    options: DemoOptions, run_id: str, rng: random.Random, users: Sequence[User]
) -> TopupPlan | None:
    """The run's top-ups and the THB liquidity they need (None: the run has none)."""
    if not options.topups:
        return None
    funded = [u for u in users if u.funded]
    topups = [
        Planned(
            key=f"{run_id}:topup:{k}",
            scenario="topup",
            type="SBP_TOPUP",
            amount=rng.randint(100, 3_000) * 100 + rng.choice((0, 50, rng.randint(1, 99))),
            payer=SBP,
            payee=(payee := rng.choice(funded)),
            comment=f"roubles for {payee.name.split()[0]}'s baht",
        )
        for k in range(options.topups)
    ]
    spare = rng.randint(5_000, 20_000) * 100
    liquidity = Planned(
        key=f"{run_id}:fund-liquidity:{HOME}:topups",
        scenario="topup-liquidity-funding",
        type="ADJUSTMENT",
        amount=sum(p.amount for p in topups) + spare,
        payer=None,
        payee=Liquidity(),
        comment="pm demo: baht for SBP top-ups",
    )
    return TopupPlan(set_rate(rng), [liquidity], topups)


def topup_wrong(p: Planned, intent: api.Intent, payment: api.Payment | None) -> str | None:
    """What is wrong with a settled top-up: not made in roubles for exactly the baht asked, a price
    other than its own rate's, or a QR that does not carry the roubles the intent collected."""
    done = intent.exchange
    if done is None:
        return "no exchange on the intent"
    asked = (SBP_CURRENCY, HOME, p.amount)
    if (intent.currency, done.buy_currency, done.buy_amount) != asked:
        made = f"{intent.currency} for {done.buy_amount} {done.buy_currency}"
        return f"made in {made}, not {SBP_CURRENCY} for {p.amount} {HOME}"
    try:
        priced = price(done, p.amount)
    except pricing.PricingError as exc:
        return f"its rate {done.pair} {done.rate} cannot price it ({exc})"
    figures = (intent.amount, done.principal, done.spread)
    if figures != (priced.sell_amount, priced.principal, priced.fee):
        return (
            f"collects {figures[0]} (principal {figures[1]}, spread {figures[2]}) where its rate "
            f"{done.pair} {done.rate} and spread {done.spread_bps} bp price {priced.sell_amount} "
            f"(principal {priced.principal}, spread {priced.fee})"
        )
    if payment is None or payment.kind != QR_SCHEME:
        return f"showed no SBP QR ({payment})"
    # An NSPK link: `https://qr.nspk.ru/<id>?type=02&bank=…&sum=<kopecks>&cur=RUB&crc=…` (docs/psp.md).
    carried = parse_qs(urlsplit(payment.link).query)
    if (carried.get("sum"), carried.get("cur")) != ([str(intent.amount)], [SBP_CURRENCY]):
        return f"its QR {payment.link} does not carry {intent.amount} {SBP_CURRENCY}"
    return None
