"""`pm demo`'s exchanges on fabricated quotes and outcomes: the seeded plan (both ways, funded for what
they sell and the liquidity for what they buy, at the demo's rate), what settled exchanges leave on
each wallet per currency and on each liquidity account, and the problems a quote or an intent that
does not add up becomes. No processes: the runs against a real fleet are tests/test_demo*.py."""

from __future__ import annotations

import random
import re
import uuid
from decimal import Decimal

import msgspec
import pytest

from pm_client import api, fx_api
from pm_shared.fx import pricing
from pm_shared.ledger import chart
from pm_tools import demo
from pm_tools.demo.fx_plan import fx_plan, price, repriced
from pm_tools.demo.ledger_check import BOUNDED, LedgerCheck, LedgerTotals, LiquidityCheck
from pm_tools.demo.plan import funding, plan
from pm_tools.demo.summary import expected_balances, liquidity_moves, party_moves, problems

ALICE = demo.User("demo-r-000", "Alice", funded=True)
RATE = fx_api.SetRate(pair="USD/THB", rate="35.8125", spread_bps=50)


def quote_of(p: demo.Planned, rate: fx_api.SetRate = RATE) -> fx_api.Quote:
    """The quote the gateway gives for `p` at `rate` (priced as the demo prices it)."""
    priced = price(rate, p)
    return msgspec.convert(
        {
            "quoteId": str(uuid.uuid4()),
            "ownerId": ALICE.id,
            "sell": {"currency": priced.sell, "amount": priced.sell_amount},
            "buy": {"currency": priced.buy, "amount": priced.buy_amount},
            "principal": priced.principal,
            "fee": priced.fee,
            "pair": rate.pair,
            "rate": rate.rate,
            "spreadBps": rate.spread_bps,
            "rateId": 7,
            "createdAt": "2025-01-01T00:00:00Z",
            "expiresAt": "2025-01-01T00:01:00Z",
        },
        fx_api.Quote,
    )


def exchanged(p: demo.Planned, state: str = "SETTLED", quote: fx_api.Quote | None = None) -> demo.Outcome:
    """An exchange's outcome: its intent carries out `quote` (the one the demo's rate gives)."""
    quote = quote or quote_of(p)
    code = "LIQUIDITY_INSUFFICIENT" if state == "FAILED" else None
    intent = msgspec.convert(
        {
            "id": str(quote.quote_id),
            "status": state,
            "failureCode": code,
            "type": "FX_EXCHANGE",
            "amount": quote.sell.amount,
            "currency": quote.sell.currency,
            "from": {"kind": "user", "id": ALICE.id},
            "to": {"kind": "user", "id": ALICE.id},
            "exchange": {
                "quoteId": str(quote.quote_id),
                "buyCurrency": quote.buy.currency,
                "buyAmount": quote.buy.amount,
                "principal": quote.principal,
                "spread": quote.fee,
                "rate": quote.rate,
                "pair": quote.pair,
                "spreadBps": quote.spread_bps,
            },
            "links": {"self": "/v1/intents/x"},
        },
        api.Intent,
    )
    return demo.Outcome(p, intent=intent, quote=quote)


def to_usd(amount: int = 100_000, key: str = "x1") -> demo.Planned:
    return demo.Planned(key, "exchange-to-usd", "FX_EXCHANGE", amount, ALICE, ALICE, buys="USD")


def to_thb(amount: int = 5_000, key: str = "x2") -> demo.Planned:
    return demo.Planned(key, "exchange-to-thb", "FX_EXCHANGE", amount, ALICE, ALICE, currency="USD")


def test_the_plan_exchanges_both_ways_and_funds_wallets_and_liquidity_at_its_rate() -> None:
    options = demo.DemoOptions(users=6, payments=10, exchanges=9, seed=4)
    rng = random.Random(4)
    users, payments, _ghost = plan(options, "r", rng)
    fx = fx_plan(options, "r", rng, users)
    assert fx is not None and fx_plan(demo.DemoOptions(), "r", rng, users) is None
    # The rate is an exact decimal string (four decimals), as the API takes it; never a float.
    assert re.fullmatch(r"3[4-6]\.\d{4}", fx.rate.rate) and fx.rate.pair == demo.PAIR
    assert [u.funded for u in fx.users] == [True] * 3
    assert sorted(p.scenario for p in fx.exchanges) == ["exchange-to-thb"] * 3 + ["exchange-to-usd"] * 6
    for p in fx.exchanges:
        assert p.payer == p.payee and p.payer in fx.users
        assert p.money("THB") == (("USD", "THB") if p.scenario == "exchange-to-thb" else ("THB", "USD"))
    # Each user's USD wallet is funded for the dollars it sells; its baht come with its usual funding.
    fundings = {(f.payee, f.money("THB")[0]): f for f in fx.fundings}
    for u in fx.users:
        sells = [p.amount for p in fx.exchanges if p.payer == u and p.currency == "USD"]
        assert fundings[(u, "USD")].scenario == "usd-funding" and fundings[(u, "USD")].amount > sum(sells)
    thb = {
        f.payee.id: f.amount
        for f in funding(users, payments + fx.exchanges, "r", rng)
        if isinstance(f.payee, demo.User)
    }
    for u in fx.users:
        sells = [p.amount for p in payments + fx.exchanges if p.payer == u and p.currency is None]
        assert thb[u.id] > sum(sells)
    # Each liquidity account holds more than the exchanges will buy out of it.
    for currency in ("THB", "USD"):
        liquidity = fundings[(demo.Liquidity(), currency)]
        buys = [price(fx.rate, p).buy_amount for p in fx.exchanges if p.money("THB")[1] == currency]
        assert liquidity.scenario == "liquidity-funding" and liquidity.amount > sum(buys) > 0


def test_exchanges_move_each_wallet_in_both_currencies_and_each_liquidity_account() -> None:
    thb_out, usd_out = to_usd(), to_thb()
    refused = demo.Planned("x3", "no-liquidity", "FX_EXCHANGE", 10**9, ALICE, ALICE, buys="USD")
    fund = demo.Planned(
        "f1", "liquidity-funding", "ADJUSTMENT", 50_000, None, demo.Liquidity(), currency="USD"
    )
    sold, back = exchanged(thb_out), exchanged(usd_out)
    funded = exchanged(thb_out)
    assert funded.intent is not None
    funded = demo.Outcome(
        fund, intent=msgspec.structs.replace(funded.intent, type="ADJUSTMENT", exchange=None)
    )
    outcomes = [funded, sold, back, exchanged(refused, "FAILED")]
    a, b = sold.quote, back.quote
    assert a is not None and b is not None
    # 1,000.00 THB at 35.8125 with 50 bp: 995.02 exchanged into 27.78 USD, 4.98 THB of spread.
    assert (a.principal, a.fee, a.buy.amount) == (99_502, 498, 2_778)
    assert party_moves(outcomes, "THB") == {
        (ALICE.id, "THB"): -100_000 + b.buy.amount,
        (ALICE.id, "USD"): a.buy.amount - 5_000,
    }
    assert liquidity_moves(outcomes, "THB") == {
        "THB": a.principal - b.buy.amount,
        "USD": 50_000 + b.principal - a.buy.amount,
    }
    wallets = [(ALICE.id, "THB"), (ALICE.id, "USD")]
    assert expected_balances(wallets, outcomes, "THB") == {
        w: party_moves(outcomes, "THB")[w] for w in wallets
    }
    assert problems(outcomes, []) == []
    summary = demo.DemoSummary("r", "THB", [ALICE], outcomes, [], 1.0)
    assert summary.exchanges() == [
        demo.ExchangeFigures("THB", "USD", 1, 100_000, a.principal, a.fee, a.buy.amount),
        demo.ExchangeFigures("USD", "THB", 1, 5_000, b.principal, b.fee, b.buy.amount),
    ]
    assert summary.moved("FX_EXCHANGE") == 100_000  # in the run's currency only


def test_a_quote_off_its_rate_or_an_intent_off_its_quote_is_a_problem() -> None:
    p = to_usd()
    good = quote_of(p)
    assert repriced(good)
    # Bought by amount (the refused exchange asks so): priced by `buying`, still its rate's price.
    rate = pricing.Rate(pricing.Pair.parse("USD/THB"), Decimal("35.8125"), 50)
    asked = pricing.buying(rate, "THB", "USD", 123_456, amount_max=api.AMOUNT_MAX)
    bought = msgspec.structs.replace(
        good,
        sell=fx_api.Amounts(currency="THB", amount=asked.sell_amount),
        buy=fx_api.Amounts(currency="USD", amount=123_456),
        principal=asked.principal,
        fee=asked.fee,
    )
    assert repriced(bought)
    generous = msgspec.structs.replace(good, buy=fx_api.Amounts(currency="USD", amount=good.buy.amount + 1))
    assert not repriced(generous)
    (found,) = problems([exchanged(p, quote=generous)], [])
    assert "is not what its rate 35.8125 and spread 50 bp price" in found
    # The intent carried out another amount than its quote locked.
    off = exchanged(p)
    assert off.intent is not None and off.intent.exchange is not None
    off.intent.exchange = msgspec.structs.replace(off.intent.exchange, buy_amount=good.buy.amount + 1)
    (found,) = problems([off], [])
    assert "not its quote" in found


def test_liquidity_accounts_are_held_to_zero_and_to_what_the_exchanges_moved() -> None:
    assert BOUNDED[int(chart.Code.FX_LIQUIDITY)] == "liquidity account"
    fine = LedgerTotals("USD", 840, 2, 10, 10, 0, 0)
    ok = LiquidityCheck("USD", 1, before=5_000, after=7_000, pending=0, moved=2_000)
    assert LedgerCheck("x", [fine], [], liquidity=[ok]).ok
    off = LiquidityCheck("THB", 2, before=None, after=1_000, pending=0, moved=999)
    (problem,) = LedgerCheck("x", [fine], [], liquidity=[ok, off]).problems()
    assert "liquidity account (THB): posted 1000" in problem and "expected posted 999" in problem


def test_exchanges_are_thb_usd_only() -> None:
    with pytest.raises(demo.DemoError, match="exchanges THB <-> USD") as refused:
        demo.DemoOptions(currency="RUB", exchanges=1).check()
    assert refused.value.exit_code == 2
    demo.DemoOptions(currency="RUB").check()
