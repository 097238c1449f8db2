"""Pricing an exchange (pm_shared.fx.pricing): exact, and every rounding in the house's favour.
Property tests over any rate, spread and amount; a few worked examples pin the arithmetic."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pm_shared.fx.pricing import Pair, PricingError, Rate, buying, selling

MAX = 10**12
USD_THB = Pair("USD", "THB")

rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=6).filter(
    lambda d: d > 0
)
spreads = st.integers(min_value=0, max_value=2_000)
amounts = st.integers(min_value=1, max_value=10**10)
directions = st.sampled_from([("USD", "THB"), ("THB", "USD")])


def test_worked_examples() -> None:
    rate = Rate(USD_THB, Decimal("35.8125"), 50)
    # 100.00 USD leave the wallet: 99.50 (and a bit) is exchanged, the rest is the 0.5 % spread.
    sold = selling(rate, "USD", "THB", 10_000, amount_max=MAX)
    assert (sold.principal, sold.fee, sold.buy_amount) == (
        9_950,
        50,
        356_334,
    )  # 9,950 × 35.8125 = 356,334.375
    # Buying exactly 1,000.00 THB: ⌈100,000 / 35.8125⌉ = 2,793 cents, and a spread of ⌈13.965⌉ = 14.
    bought = buying(rate, "USD", "THB", 100_000, amount_max=MAX)
    assert (bought.principal, bought.fee, bought.sell_amount, bought.buy_amount) == (
        2_793,
        14,
        2_807,
        100_000,
    )
    # The other way: 1,000.00 THB sold at 1/35.8125 USD per THB.
    back = selling(Rate(USD_THB, Decimal("35.8125"), 0), "THB", "USD", 100_000, amount_max=MAX)
    assert (back.principal, back.fee, back.buy_amount) == (100_000, 0, 2_792)  # 2,792.32…


@given(rate=rates, spread=spreads, amount=amounts, direction=directions)
def test_selling_never_gives_more_than_the_rate_and_charges_at_least_the_spread(
    rate: Decimal, spread: int, amount: int, direction: tuple[str, str]
) -> None:
    sell, buy = direction
    priced = Rate(USD_THB, rate, spread)
    try:
        price = selling(priced, sell, buy, amount, amount_max=MAX)
    except PricingError as exc:
        assert exc.code in ("amount_too_small", "amount_too_large")
        return
    assert price.principal + price.fee == price.sell_amount == amount
    assert price.fee * 10_000 >= price.principal * spread  # the spread, rounded up
    assert price.buy_amount <= price.principal * priced.factor(sell, buy)  # rounded down
    assert price.buy_amount >= 1


@given(rate=rates, spread=spreads, amount=amounts, direction=directions)
def test_buying_costs_at_least_the_rate_and_the_spread(
    rate: Decimal, spread: int, amount: int, direction: tuple[str, str]
) -> None:
    sell, buy = direction
    priced = Rate(USD_THB, rate, spread)
    try:
        price = buying(priced, sell, buy, amount, amount_max=MAX)
    except PricingError as exc:
        assert exc.code in ("amount_too_small", "amount_too_large")
        return
    assert price.buy_amount == amount
    assert price.principal * priced.factor(sell, buy) >= amount  # the principal rounded up
    assert Fraction(price.fee) >= Fraction(price.principal * spread, 10_000)
    assert price.sell_amount == price.principal + price.fee


@given(rate=rates, spread=spreads, amount=amounts, direction=directions)
def test_selling_and_selling_back_never_returns_more_than_was_sold(
    rate: Decimal, spread: int, amount: int, direction: tuple[str, str]
) -> None:
    sell, buy = direction
    priced = Rate(USD_THB, rate, spread)
    try:
        there = selling(priced, sell, buy, amount, amount_max=MAX)
        back = selling(priced, buy, sell, there.buy_amount, amount_max=MAX)
    except PricingError:
        return
    assert back.buy_amount <= amount


@pytest.mark.parametrize("text", ["USD", "USD/USD", "EUR/THB", "USD-THB", "/THB"])
def test_a_pair_names_two_currencies_pm_keeps(text: str) -> None:
    with pytest.raises(PricingError) as caught:
        Pair.parse(text)
    assert caught.value.code == "unknown_pair"


def test_a_rate_prices_only_its_own_pair_and_tiny_amounts_are_refused() -> None:
    rate = Rate(Pair("USD", "THB"), Decimal("35"), 0)
    with pytest.raises(PricingError, match="does not price") as caught:
        selling(rate, "USD", "RUB", 100, amount_max=MAX)
    assert caught.value.code == "unknown_pair"
    with pytest.raises(PricingError) as tiny:
        selling(rate, "THB", "USD", 34, amount_max=MAX)  # 0.34 THB is less than a cent
    assert tiny.value.code == "amount_too_small"
    with pytest.raises(PricingError) as huge:
        selling(rate, "USD", "THB", 10**11, amount_max=MAX)  # 35 × 10^11 satang > 10^12
    assert huge.value.code == "amount_too_large"
