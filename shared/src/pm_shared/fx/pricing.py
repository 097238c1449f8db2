"""Pricing an exchange (docs/fx.md): exact rational arithmetic, never floats, every rounding in the
house's favour (TigerBeetle's currency-exchange recipe: round in favour of the liquidity account).

A rate is quoted for a pair `BASE/QUOTE` as QUOTE per one BASE (`USD/THB 35.8125`); the same rate
prices both directions. The spread is charged as its own amount in the sold currency, not hidden in
the rate, so the ledger records it as its own transfer (to fee revenue):

- sell amount given (`S`, what leaves the user's wallet): the principal is the largest `P` with
  `P + P·spread ≤ S`, the fee is `S − P` (never less than `P·spread`), and the user receives
  `⌊P · rate⌋`;
- buy amount given (`B`, what the user receives): `P = ⌈B / rate⌉`, fee `⌈P · spread⌉`, `S = P + fee`.

Minor units follow each currency's digits (chart.MINOR_DIGITS), so the conversion factor carries
`10^(buy digits − sell digits)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from pm_shared.ledger import chart

BPS = 10_000
SPREAD_BPS_MAX = 2_000
"""20 %: a spread above it is a mistake, not a price."""


class PricingError(ValueError):
    """The exchange cannot be priced as asked; `code` is the problem code the API answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Pair:
    base: str
    quote: str

    @classmethod
    def parse(cls, text: str) -> Pair:
        base, sep, quote = text.partition("/")
        if not sep or base == quote or base not in chart.LEDGERS or quote not in chart.LEDGERS:
            known = ", ".join(sorted(chart.LEDGERS))
            raise PricingError("unknown_pair", f"{text!r} is no pair of two different currencies of {known}")
        return cls(base, quote)

    @classmethod
    def of(cls, sell: str, buy: str) -> tuple[Pair, Pair]:
        """The two ways a pair of these currencies can be written (the stored one is either)."""
        return cls(sell, buy), cls(buy, sell)

    def __str__(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass(frozen=True)
class Rate:
    pair: Pair
    rate: Decimal
    """QUOTE per one BASE, exact (as the admin wrote it)."""
    spread_bps: int

    def factor(self, sell: str, buy: str) -> Fraction:
        """Minor units of `buy` per minor unit of `sell`."""
        exact = Fraction(self.rate)
        if (sell, buy) == (self.pair.base, self.pair.quote):
            per_unit = exact
        elif (sell, buy) == (self.pair.quote, self.pair.base):
            per_unit = 1 / exact
        else:
            raise PricingError("unknown_pair", f"the rate of {self.pair} does not price {sell}→{buy}")
        return per_unit * Fraction(10) ** (chart.MINOR_DIGITS[buy] - chart.MINOR_DIGITS[sell])


@dataclass(frozen=True)
class Price:
    """An exchange priced: the user pays `sell_amount` (= `principal` + `fee`, in `sell`) and receives
    `buy_amount` (in `buy`)."""

    sell: str
    buy: str
    sell_amount: int
    principal: int
    fee: int
    buy_amount: int


def _ceil(value: Fraction) -> int:
    return math.ceil(value)


def selling(rate: Rate, sell: str, buy: str, sell_amount: int, *, amount_max: int) -> Price:
    """The price of selling exactly `sell_amount` (the total leaving the user's wallet)."""
    factor = rate.factor(sell, buy)
    principal = (sell_amount * BPS) // (BPS + rate.spread_bps)
    buy_amount = math.floor(principal * factor)
    return _checked(Price(sell, buy, sell_amount, principal, sell_amount - principal, buy_amount), amount_max)


def buying(rate: Rate, sell: str, buy: str, buy_amount: int, *, amount_max: int) -> Price:
    """The price of receiving exactly `buy_amount`."""
    factor = rate.factor(sell, buy)
    principal = _ceil(buy_amount / factor)
    fee = _ceil(Fraction(principal * rate.spread_bps, BPS))
    return _checked(Price(sell, buy, principal + fee, principal, fee, buy_amount), amount_max)


def _checked(price: Price, amount_max: int) -> Price:
    if price.principal <= 0 or price.buy_amount <= 0:
        raise PricingError(
            "amount_too_small",
            f"{price.sell_amount} {price.sell} buys less than one minor unit of {price.buy}",
        )
    if price.sell_amount > amount_max or price.buy_amount > amount_max:
        raise PricingError("amount_too_large", f"the exchange exceeds {amount_max} minor units on one side")
    return price
