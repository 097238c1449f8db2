"""The exchanges `pm demo` plans (docs/fx.md): THB <-> USD at a rate the demo sets, paid out of the
operator's liquidity accounts, which the demo funds first.

Each run with `exchanges`:

1. sets a USD/THB rate (seeded, 34.5 to 36.5 baht a dollar, four decimals) with a 50 bp spread;
2. opens a USD wallet for up to three funded users and funds it (an ADJUSTMENT in USD) for the dollars
   they will sell, and some to spare;
3. funds the liquidity accounts in THB and USD (ADJUSTMENT operator → liquidity) for what the
   exchanges will buy out of them, priced here at the demo's rate (`pm_shared.fx.pricing`), and some
   to spare, so the exchanges settle whatever order they happen in;
4. sends the exchanges among the other traffic: two in three sell THB for USD, the others USD for THB,
   each a quote selling the planned amount, then the FX_EXCHANGE that carries it out
   (`pm_tools.demo.fx_traffic`, which also sends the refusals that follow them).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from pm_client import api, fx_api
from pm_shared.fx import pricing
from pm_tools.demo.plan import DemoOptions, Liquidity, Planned, Scenario, User

PAIR = "USD/THB"
HOME: api.Currency = "THB"
"""The run's currency when it exchanges (DemoOptions.check)."""
FOREIGN: api.Currency = "USD"
SPREAD_BPS = 50
SOURCE = "pm demo"
FX_USERS = 3
"""Funded users who also get a USD wallet and exchange."""
NO_LIQUIDITY_MARGIN = 10_000
"""How much more (100.00 USD) the refused exchange buys than the USD liquidity holds."""
LIQUIDITY = Liquidity()


def rate_text(rng: random.Random) -> str:
    """A seeded USD/THB rate as the API takes it: an exact decimal string, never a float."""
    ten_thousandths = rng.randint(345_000, 365_000)
    return f"{ten_thousandths // 10_000}.{ten_thousandths % 10_000:04d}"


def set_rate(rng: random.Random) -> fx_api.SetRate:
    return fx_api.SetRate(pair=PAIR, rate=rate_text(rng), spread_bps=SPREAD_BPS, source=SOURCE)


def _rate(rate: fx_api.SetRate) -> pricing.Rate:
    return pricing.Rate(pricing.Pair.parse(rate.pair), Decimal(rate.rate), rate.spread_bps)


def price(rate: fx_api.SetRate, p: Planned) -> pricing.Price:
    """What an exchange of `p` gets at `rate` (the quote, asked at that rate, says the same)."""
    sold, bought = p.money(HOME)
    return pricing.selling(_rate(rate), sold, bought, p.amount, amount_max=api.AMOUNT_MAX)


def repriced(quote: fx_api.Quote) -> bool:
    """Whether the quote's figures are what its own rate and spread price: selling its sell amount, or
    buying its buy amount (the refused exchange asks for an amount bought)."""
    rate = pricing.Rate(pricing.Pair.parse(quote.pair), Decimal(quote.rate), quote.spread_bps)
    sell, buy = quote.sell, quote.buy
    shown = pricing.Price(sell.currency, buy.currency, sell.amount, quote.principal, quote.fee, buy.amount)
    try:
        sold = pricing.selling(rate, sell.currency, buy.currency, sell.amount, amount_max=api.AMOUNT_MAX)
        bought = pricing.buying(rate, sell.currency, buy.currency, buy.amount, amount_max=api.AMOUNT_MAX)
    except pricing.PricingError:
        return False
    return shown in (sold, bought)


@dataclass(frozen=True)
class FxPlan:
    """One run's exchanges: the rate it sets, who exchanges, the fundings first, then the exchanges."""

    rate: fx_api.SetRate
    users: list[User]
    """Funded users who also hold a USD wallet."""
    fundings: list[Planned]
    exchanges: list[Planned]


def _minor(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, high) * 100 + rng.choice((0, 50, rng.randint(1, 99)))


def _exchanges(options: DemoOptions, run_id: str, rng: random.Random, users: Sequence[User]) -> list[Planned]:
    n = options.exchanges
    back = n // 3
    planned: list[Planned] = []
    for k in range(n):
        user = rng.choice(list(users))
        to_home = k < back
        planned.append(
            Planned(
                key=f"{run_id}:fx:{k}",
                scenario="exchange-to-thb" if to_home else "exchange-to-usd",
                type="FX_EXCHANGE",
                amount=_minor(rng, 10, 400) if to_home else _minor(rng, 300, 15_000),
                payer=user,
                payee=user,
                comment="dollars for baht" if to_home else "baht for dollars",
                currency=FOREIGN if to_home else None,
                buys=None if to_home else FOREIGN,
            )
        )
    rng.shuffle(planned)
    return planned


def _funding(key: str, scenario: Scenario, amount: int, payee: User | Liquidity, currency: str) -> Planned:
    return Planned(
        key=key,
        scenario=scenario,
        type="ADJUSTMENT",
        amount=amount,
        payer=None,
        payee=payee,
        comment=f"pm demo: {currency} for exchanges",
        currency=None if currency == HOME else currency,
    )


def fx_plan(options: DemoOptions, run_id: str, rng: random.Random, users: Sequence[User]) -> FxPlan | None:
    """The run's exchanges and what they need funded first (None: the run has none)."""
    if not options.exchanges:
        return None
    rate = set_rate(rng)
    fx_users = [u for u in users if u.funded][:FX_USERS]
    exchanges = _exchanges(options, run_id, rng, fx_users)
    fundings: list[Planned] = []
    for u in fx_users:
        sells = sum(p.amount for p in exchanges if p.payer == u and p.currency == FOREIGN)
        amount = sells + rng.randint(50, 300) * 100
        fundings.append(_funding(f"{run_id}:fund-usd:{u.id}", "usd-funding", amount, u, FOREIGN))
    for currency, spare in ((FOREIGN, rng.randint(500, 2_000)), (HOME, rng.randint(20_000, 60_000))):
        # What the exchanges buy out of this currency's liquidity, at the demo's rate.
        buys = sum(price(rate, p).buy_amount for p in exchanges if p.money(HOME)[1] == currency)
        key = f"{run_id}:fund-liquidity:{currency}"
        fundings.append(_funding(key, "liquidity-funding", buys + spare * 100, LIQUIDITY, currency))
    return FxPlan(rate, fx_users, fundings, exchanges)
