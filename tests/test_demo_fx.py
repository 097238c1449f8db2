"""`pm demo`'s exchanges against a real fleet (gateway, orchestrator, ledger-writer and reconciler as
processes) on a database of this module's own, so the liquidity and fee revenue accounts hold only
what these runs did.

The demo checks itself (each outcome against its scenario, every wallet in both currencies, the
ledger's sums, the liquidity accounts); these tests check it again from outside, reading the intent
table and the embedded ledger's accounts and transfers directly: each exchange carried out its quote
with its legs on two ledgers, the refusals moved nothing, and per ledger the money adds up.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pm_shared.ledger import chart, ids
from pm_tools import demo
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.saga import SagaFleet, accounts, fetch, module_saga, posted, transfers

pytestmark = pytest.mark.slow

OPTIONS = demo.DemoOptions(users=5, payments=6, concurrency=6, seed=21, exchanges=7)


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    with module_saga(Path(tmp_path_factory.mktemp("demo-fx"))) as running:
        yield running


async def run_demo(saga: SagaFleet, options: demo.DemoOptions, *, ledger: bool = True) -> demo.DemoSummary:
    return await demo.run_demo(
        saga.url,
        saga.admin.key_id,
        saga.admin.secret,
        options,
        door=demo.Door(saga.url, proxy_secret=PROXY_SECRET),
        ledger_url="embedded+" + saga.database_url if ledger else None,
    )


def wallet(owner: str, currency: str) -> int:
    return ids.account_id("user", owner, chart.ledger_of(currency), int(chart.Code.USER_WALLET))


def operator(code: chart.Code, currency: str) -> int:
    return ids.account_id("operator", code.name.lower(), chart.ledger_of(currency), int(code))


def exchanges(summary: demo.DemoSummary) -> list[demo.Outcome]:
    return [o for o in summary.outcomes if o.planned.type == "FX_EXCHANGE"]


async def assert_legs_on_two_ledgers(saga: SagaFleet, summary: demo.DemoSummary) -> None:
    """Each settled exchange posted principal and spread on the sold ledger and the bought amount on
    the other, each leg naming the intent (= its quote); the one beyond the liquidity posted nothing
    (the reused quote is its first exchange's)."""
    for o in exchanges(summary):
        quote = o.quote
        assert quote is not None, o
        if o.planned.scenario == "quote-reused":
            continue
        intent_id = str(quote.quote_id)
        names = ["principal", "spread", "buy"]
        posts = [ids.transfer_id(intent_id, f"{n}:post") for n in names]
        found = await transfers(saga.database_url, [ids.transfer_id(intent_id, n) for n in names] + posts)
        if o.planned.scenario == "no-liquidity":
            assert [t for t in found.values() if t.id in posts] == [], o.planned
            continue
        assert o.intent is not None and o.intent.id == intent_id
        sold, bought = quote.sell.currency, quote.buy.currency
        wanted = {
            "principal": (
                wallet(quote.owner_id, sold),
                operator(chart.Code.FX_LIQUIDITY, sold),
                quote.principal,
            ),
            "spread": (wallet(quote.owner_id, sold), operator(chart.Code.FEE_REVENUE, sold), quote.fee),
            "buy": (
                operator(chart.Code.FX_LIQUIDITY, bought),
                wallet(quote.owner_id, bought),
                quote.buy.amount,
            ),
        }
        for name, (debit, credit, amount) in wanted.items():
            leg = found[ids.transfer_id(intent_id, name)]
            post = found[ids.transfer_id(intent_id, f"{name}:post")]
            currency = bought if name == "buy" else sold
            assert (leg.debit_account_id, leg.credit_account_id, leg.amount) == (debit, credit, amount), name
            assert leg.ledger == post.ledger == chart.ledger_of(currency), name
            assert leg.user_data_128 == post.user_data_128 == uuid.UUID(intent_id).int, name
            assert (leg.code, post.amount) == (10 if name == "spread" else 7, amount), name


async def assert_ledger_adds_up(saga: SagaFleet) -> None:
    """Per ledger the accounts sum to zero, posted and pending; no wallet, merchant or liquidity
    account below zero (read from the ledger's table)."""
    rows = await fetch(
        saga.database_url,
        "SELECT ledger, sum(debits_posted - credits_posted) AS posted,"
        " sum(debits_pending - credits_pending) AS pending,"
        " count(*) FILTER (WHERE code IN (1, 2, 30) AND debits_posted + debits_pending > credits_posted)"
        " AS below"
        " FROM ledger.accounts GROUP BY ledger",
    )
    assert {r["ledger"]: (r["posted"], r["pending"], r["below"]) for r in rows} == {
        ledger: (0, 0, 0) for ledger in chart.LEDGERS.values()
    }


async def assert_money_as_quoted(saga: SagaFleet, summary: demo.DemoSummary) -> None:
    """Wallets in both currencies, liquidity and fee revenue: what the quotes and fundings say (computed
    here again, from the quotes), on a database where nothing else moved them."""
    moves: Counter[int] = Counter()
    for o in summary.outcomes:
        p, quote = o.planned, o.quote
        if o.state != "SETTLED":
            continue
        for fee in o.fees():  # the payments' demo fees
            moves[operator(chart.Code.FEE_REVENUE, fee.currency)] += fee.amount
        if p.type == "FX_EXCHANGE" and quote is not None:
            user, sold, bought = quote.owner_id, quote.sell.currency, quote.buy.currency
            moves[wallet(user, sold)] -= quote.sell.amount
            moves[wallet(user, bought)] += quote.buy.amount
            moves[operator(chart.Code.FX_LIQUIDITY, sold)] += quote.principal
            moves[operator(chart.Code.FX_LIQUIDITY, bought)] -= quote.buy.amount
            moves[operator(chart.Code.FEE_REVENUE, sold)] += quote.fee
        elif p.type == "ADJUSTMENT" and isinstance(p.payee, demo.Liquidity):
            moves[operator(chart.Code.FX_LIQUIDITY, p.money("THB")[0])] += p.amount
    held = [wallet(w.owner_id, w.currency) for w in summary.wallets]
    found = await accounts(saga.database_url, [*moves, *held])
    # Liquidity and fee revenue moved by exactly the exchanges (and the fundings of the liquidity, the
    # payments' fees).
    operators = {a for a in moves if found[a].code in (chart.Code.FX_LIQUIDITY, chart.Code.FEE_REVENUE)}
    assert len(operators) == 4 and all(posted(found[a]) == moves[a] for a in operators)
    # Every wallet, THB and USD, holds what the demo expected, which the exchanges moved as quoted.
    assert [posted(found[a]) for a in held] == [w.expected for w in summary.wallets]
    assert all(w.ok for w in summary.wallets) and {w.currency for w in summary.wallets} == {"THB", "USD"}
    # A USD wallet: its funding, less the dollars sold, plus the dollars bought (from the quotes).
    usd = {
        o.planned.payee.id: o.planned.amount
        for o in summary.outcomes
        if o.planned.scenario == "usd-funding" and isinstance(o.planned.payee, demo.User)
    }
    for w in (w for w in summary.wallets if w.currency == "USD"):
        assert w.expected == usd[w.owner_id] + moves[wallet(w.owner_id, "USD")] > 0


async def test_demo_exchanges_both_ways_refuses_what_it_must_and_the_money_adds_up_per_ledger(
    saga: SagaFleet,
) -> None:
    summary = await run_demo(saga, OPTIONS)
    assert summary.problems == [] and summary.ok, summary.problems
    scenarios = summary.by_scenario()
    # Seven exchanges, two in three to USD; three users exchange, each with a USD wallet funded.
    assert {k: n for k, n in scenarios.items() if k[0].startswith("exchange-")} == {
        ("exchange-to-usd", "SETTLED", ""): 5,
        ("exchange-to-thb", "SETTLED", ""): 2,
    }
    assert scenarios[("usd-funding", "SETTLED", "")] == 3
    assert scenarios[("liquidity-funding", "SETTLED", "")] == 2
    assert scenarios[("quote-reused", "REFUSED", "quote_used")] == 1
    assert scenarios[("no-liquidity-funding", "SETTLED", "")] == 1
    assert scenarios[("no-liquidity", "FAILED", "LIQUIDITY_INSUFFICIENT")] == 1
    assert summary.rate is not None and summary.rate.pair == demo.PAIR

    # The intent table: one intent per quote (the reused quote made none), each carrying its quote.
    made = [o for o in exchanges(summary) if o.planned.scenario != "quote-reused"]
    rows = await fetch(
        saga.database_url,
        "SELECT id::text, state, failure_code, amount, currency, exchange FROM pm.intent"
        " WHERE type = 'FX_EXCHANGE'",
    )
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == len(made) == 8
    for o in made:
        assert o.quote is not None
        row = by_id[str(o.quote.quote_id)]
        assert (row["state"], row["failure_code"]) == demo.EXPECTED[o.planned.scenario]
        assert (row["amount"], row["currency"].strip()) == (o.quote.sell.amount, o.quote.sell.currency)
        figures = json.loads(row["exchange"]) if isinstance(row["exchange"], str) else row["exchange"]
        assert (figures["buyAmount"], figures["principal"], figures["spread"]) == (
            o.quote.buy.amount,
            o.quote.principal,
            o.quote.fee,
        )
    await assert_legs_on_two_ledgers(saga, summary)

    await assert_money_as_quoted(saga, summary)
    assert summary.ledger is not None and summary.ledger.checked["liquidity account"] == 3
    assert [(c.currency, c.before, c.ok) for c in summary.ledger.liquidity] == [
        ("THB", 0, True),
        ("USD", 0, True),
    ]
    await assert_ledger_adds_up(saga)
    report = summary.to_json()
    assert isinstance(report["exchanges"], dict) and len(report["exchanges"]["directions"]) == 2


async def test_without_the_ledger_the_exchange_beyond_liquidity_is_left_out_and_said_so(
    saga: SagaFleet,
) -> None:
    summary = await run_demo(saga, demo.DemoOptions(users=4, payments=3, seed=5, exchanges=3), ledger=False)
    assert summary.ok, summary.problems
    assert not any(o.planned.scenario.startswith("no-liquidity") for o in summary.outcomes)
    assert summary.by_scenario()[("quote-reused", "REFUSED", "quote_used")] == 1
    assert any("no exchange beyond the USD liquidity" in note for note in summary.notes), summary.notes
    await assert_ledger_adds_up(saga)
