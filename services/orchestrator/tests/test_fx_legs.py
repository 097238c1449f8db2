"""An FX_EXCHANGE's ledger legs (pm_shared.intents.legs), for any rate, spread and amount (hypothesis):
each transfer stays on one ledger, the sold currency's ledger and the bought currency's each balance
(what leaves the user's wallet is what liquidity and fee revenue take; what liquidity pays out is what
the user's other wallet gets), the spread leg is the quote's fee, and the legs move as one chain."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import tigerbeetle as tb
from hypothesis import given
from hypothesis import strategies as st

from pm_shared.fx.pricing import Pair, PricingError, Rate, selling
from pm_shared.intents import legs
from pm_shared.intents.record import Exchange, IntentRow, Side
from pm_shared.ledger import chart

LINKED = int(tb.TransferFlags.LINKED)


def exchange_row(price_sell: int, principal: int, spread: int, buy: int) -> IntentRow:
    now = datetime.now(UTC)
    intent_id = str(uuid.uuid4())
    return IntentRow(
        id=intent_id, type="FX_EXCHANGE", state="VALIDATED", step="authorize", channel="INTERNAL",
        route=("validate", "price", "authorize", "settle"), amount=price_sell, currency="THB",
        source=Side("user", "u-1"), target=Side("user", "u-1"), from_name=None, to_name=None,
        comment=None, requires_monitoring=False, metadata={}, fees=(), created_at=now, updated_at=now,
        exchange=Exchange(
            quote_id=intent_id, buy_currency="USD", buy_amount=buy, principal=principal, spread=spread
        ),
    )  # fmt: skip


@given(
    rate=st.decimals(min_value=Decimal("1"), max_value=Decimal("100"), places=4),
    spread_bps=st.integers(min_value=0, max_value=2_000),
    amount=st.integers(min_value=1, max_value=10**11),
)
def test_each_ledger_balances_and_the_spread_leg_is_the_fee(
    rate: Decimal, spread_bps: int, amount: int
) -> None:
    try:
        price = selling(Rate(Pair("USD", "THB"), rate, spread_bps), "THB", "USD", amount, amount_max=10**12)
    except PricingError:
        return
    row = exchange_row(price.sell_amount, price.principal, price.fee, price.buy_amount)
    all_legs = legs.legs(row)
    assert all(leg.debit.currency == leg.credit.currency for leg in all_legs)
    moved: Counter[tuple[int, int]] = Counter()  # (account id, ledger) → net credit
    for leg in all_legs:
        moved[(leg.debit.id, chart.ledger_of(leg.debit.currency))] -= leg.amount
        moved[(leg.credit.id, chart.ledger_of(leg.credit.currency))] += leg.amount
    for ledger in (chart.ledger_of("THB"), chart.ledger_of("USD")):
        assert sum(v for (_, number), v in moved.items() if number == ledger) == 0
    by_name = {leg.name: leg for leg in all_legs}
    spread = by_name.get(legs.SPREAD)
    assert (spread is None) if price.fee == 0 else (spread is not None and spread.amount == price.fee)
    assert moved[(legs.wallet("u-1", "THB").id, chart.ledger_of("THB"))] == -price.sell_amount
    assert moved[(legs.wallet("u-1", "USD").id, chart.ledger_of("USD"))] == price.buy_amount
    transfers = legs.authorize(row, all_legs, timeout_s=60)
    assert [t.flags & LINKED == LINKED for t in transfers] == [True] * (len(transfers) - 1) + [False]
    assert [t.ledger for t in transfers] == [chart.ledger_of(leg.debit.currency) for leg in all_legs]
    # Every leg names the quote (the intent's id is the quote's).
    assert {t.user_data_128 for t in transfers} == {uuid.UUID(row.id).int}
