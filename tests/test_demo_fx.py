"""`pm demo`'s exchanges and SBP top-ups against a real fleet (gateway, orchestrator, ledger-writer,
reconciler, adapter-qp and adapter-ipps as processes, with both PSP sandboxes: `pm_tools.testing.psp`)
on a database of this module's own, so the liquidity, fee revenue and clearing accounts hold only what
these runs did.

The demo checks itself (each outcome against its scenario, every wallet in both currencies, the
ledger's sums, the liquidity accounts); these tests check it again from outside, reading the intent
table, the QP sandbox and the embedded ledger's accounts and transfers directly: each exchange carried
out its quote with its legs on two ledgers, each top-up collected the roubles its rate prices (its QR
paid in the QP sandbox) and credited exactly the baht asked, the refusals moved nothing, and per
ledger the money adds up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from pm_client import api
from pm_shared.fx import pricing
from pm_shared.ledger import chart, ids
from pm_tools import demo, processes
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.psp import QP_SECRET, Psp, psp_fleet
from pm_tools.testing.saga import SagaFleet, accounts, fetch, posted, transfers

pytestmark = pytest.mark.slow

OPTIONS = demo.DemoOptions(users=5, payments=6, concurrency=6, seed=21, exchanges=7, topups=3)


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Psp]:
    with psp_fleet(Path(tmp_path_factory.mktemp("demo-fx"))) as running:
        yield running


@pytest.fixture(scope="module")
def saga(psp: Psp) -> SagaFleet:
    return psp.saga


def qp_sandbox(psp: Psp) -> demo.QpSandbox:
    """The QP sandbox of the fleet, with the secret it shares with adapter-qp and the gateway."""
    return demo.QpSandbox(psp.qp_url, QP_SECRET)


async def run_demo(
    saga: SagaFleet, options: demo.DemoOptions, qp: demo.QpSandbox, *, ledger: bool = True
) -> demo.DemoSummary:
    return await demo.run_demo(
        saga.url,
        saga.admin.key_id,
        saga.admin.secret,
        options,
        door=demo.Door(saga.url, proxy_secret=PROXY_SECRET),
        ledger_url="embedded+" + saga.database_url if ledger else None,
        qp=qp,
    )


def wallet(owner: str, currency: str) -> int:
    return ids.account_id("user", owner, chart.ledger_of(currency), int(chart.Code.USER_WALLET))


def operator(code: chart.Code, currency: str) -> int:
    return ids.account_id("operator", code.name.lower(), chart.ledger_of(currency), int(code))


def exchanges(summary: demo.DemoSummary) -> list[demo.Outcome]:
    return [o for o in summary.outcomes if o.planned.type == "FX_EXCHANGE"]


def topups(summary: demo.DemoSummary) -> list[tuple[demo.Outcome, api.Intent, api.Exchange]]:
    """The run's top-ups with their (final) intents and exchanges."""
    found = []
    for o in (o for o in summary.outcomes if o.planned.type == "SBP_TOPUP"):
        assert o.intent is not None and o.intent.exchange is not None, o
        found.append((o, o.intent, o.intent.exchange))
    return found


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


def priced(rate: api.Exchange | demo.DemoSummary, amount: int) -> pricing.Price:
    """What `amount` baht cost in roubles at a rate (an intent's own, or the one the run set), computed
    here again (buying exactly the amount, every rounding the house's way: docs/fx.md)."""
    shown = rate.topup_rate if isinstance(rate, demo.DemoSummary) else rate
    assert shown is not None
    exact = pricing.Rate(pricing.Pair.parse(shown.pair), Decimal(shown.rate), shown.spread_bps)
    return pricing.buying(exact, "RUB", "THB", amount, amount_max=api.AMOUNT_MAX)


async def assert_topups_paid_and_exchanged(psp: Psp, summary: demo.DemoSummary) -> None:
    """Each top-up was made in roubles at the run's THB/RUB rate for exactly the baht asked, its QR paid
    in the QP sandbox for those roubles, and it posted its three legs outright, each naming the intent
    (= its quote): QP clearing → RUB liquidity (principal) and RUB fee revenue (spread), THB liquidity →
    the wallet (the baht)."""
    rows = await fetch(
        psp.saga.database_url,
        "SELECT id::text, state, failure_code, amount, currency, exchange FROM pm.intent"
        " WHERE type = 'SBP_TOPUP'",
    )
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == len(topups(summary)) == 3
    for o, intent, done in topups(summary):
        p = o.planned
        assert isinstance(p.payee, demo.User) and (intent.status, p.scenario) == ("SETTLED", "topup")
        price = priced(summary, p.amount)
        assert (intent.amount, done.principal, done.spread) == (price.sell_amount, price.principal, price.fee)
        assert (intent.currency, done.buy_currency, done.buy_amount) == ("RUB", "THB", p.amount)
        row = by_id[intent.id]
        assert (row["state"], row["failure_code"], row["amount"]) == ("SETTLED", None, intent.amount)
        assert row["currency"].strip() == "RUB"
        figures = json.loads(row["exchange"]) if isinstance(row["exchange"], str) else row["exchange"]
        assert (figures["buyAmount"], figures["quoteId"]) == (p.amount, intent.id)
        assert o.payment is not None and o.payment.psp_reference is not None
        shown = await psp.qp("GET", f"/v1/qrs/{o.payment.psp_reference}")
        assert shown.status_code == 200 and shown.json()["status"] == "ACCEPTED", shown.text
        assert shown.json()["amount"] == intent.amount
        wanted = {
            "principal": (operator(chart.Code.QP_CLEARING, "RUB"), operator(chart.Code.FX_LIQUIDITY, "RUB")),
            "spread": (operator(chart.Code.QP_CLEARING, "RUB"), operator(chart.Code.FEE_REVENUE, "RUB")),
            "buy": (operator(chart.Code.FX_LIQUIDITY, "THB"), wallet(p.payee.id, "THB")),
        }
        amounts = {"principal": done.principal, "spread": done.spread, "buy": done.buy_amount}
        legs = [ids.transfer_id(intent.id, n) for n in wanted]
        posts = [ids.transfer_id(intent.id, f"{n}:post") for n in wanted]
        found = await transfers(psp.saga.database_url, legs + posts)
        assert set(found) == set(legs), "made outright: no pending, no post"
        for name, (debit, credit) in wanted.items():
            leg = found[ids.transfer_id(intent.id, name)]
            assert (leg.debit_account_id, leg.credit_account_id, leg.amount) == (debit, credit, amounts[name])
            assert leg.ledger == chart.ledger_of("THB" if name == "buy" else "RUB"), name
            assert leg.user_data_128 == uuid.UUID(intent.id).int, name


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
        elif p.type == "SBP_TOPUP" and isinstance(p.payee, demo.User):
            # Priced here at the run's rate: the roubles leave QP clearing (below zero by design: QP
            # owes them), the principal into the RUB liquidity, the spread into fee revenue.
            price = priced(summary, p.amount)
            moves[operator(chart.Code.QP_CLEARING, "RUB")] -= price.sell_amount
            moves[operator(chart.Code.FX_LIQUIDITY, "RUB")] += price.principal
            moves[operator(chart.Code.FEE_REVENUE, "RUB")] += price.fee
            moves[operator(chart.Code.FX_LIQUIDITY, "THB")] -= p.amount
            moves[wallet(p.payee.id, "THB")] += p.amount
    held = [wallet(w.owner_id, w.currency) for w in summary.wallets]
    found = await accounts(saga.database_url, [*moves, *held])
    # Liquidity, fee revenue and QP clearing moved by exactly the exchanges and the top-ups (and the
    # fundings of the liquidity, the payments' fees): on each ledger, THB, USD and RUB.
    codes = (chart.Code.FX_LIQUIDITY, chart.Code.FEE_REVENUE, chart.Code.QP_CLEARING)
    operators = {a for a in moves if found[a].code in codes}
    assert len(operators) == 7 and all(posted(found[a]) == moves[a] for a in operators)
    assert posted(found[operator(chart.Code.QP_CLEARING, "RUB")]) < 0
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


async def test_demo_exchanges_both_ways_tops_up_via_sbp_and_the_money_adds_up_per_ledger(
    psp: Psp, saga: SagaFleet
) -> None:
    summary = await run_demo(saga, OPTIONS, qp_sandbox(psp))
    assert summary.problems == [] and summary.ok, summary.problems
    assert summary.notes == [], summary.notes
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
    # Three SBP top-ups into THB wallets, the THB liquidity funded for them first; all settle.
    assert scenarios[("topup-liquidity-funding", "SETTLED", "")] == 1
    assert {k: n for k, n in scenarios.items() if k[0] == "topup"} == {("topup", "SETTLED", ""): 3}
    assert summary.topup_rate is not None and summary.topup_rate.pair == demo.TOPUP_PAIR == "THB/RUB"

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
    await assert_topups_paid_and_exchanged(psp, summary)

    await assert_money_as_quoted(saga, summary)
    assert summary.ledger is not None and summary.ledger.checked["liquidity account"] == 3
    assert [(c.currency, c.before, c.ok) for c in summary.ledger.liquidity] == [
        ("THB", 0, True),
        ("USD", 0, True),
        ("RUB", 0, True),
    ]
    # The RUB liquidity holds exactly the top-ups' principal (nothing else moves it in this run).
    figures = summary.topups()
    assert summary.ledger.liquidity[2].after == figures.principal > 0 and figures.settled == 3
    assert figures.bought == sum(o.planned.amount for o, _, _ in topups(summary))
    await assert_ledger_adds_up(saga)
    report = summary.to_json()
    assert isinstance(report["exchanges"], dict) and len(report["exchanges"]["directions"]) == 2
    assert isinstance(report["topups"], dict) and report["topups"]["settled"] == 3
    assert [c["currency"] for c in report["topups"]["liquidity"]] == ["THB", "RUB"]


async def test_without_the_ledger_or_the_qp_sandbox_what_needs_them_is_left_out_and_said_so(
    psp: Psp, saga: SagaFleet
) -> None:
    nowhere = demo.QpSandbox(processes.base_url(processes.free_port()), QP_SECRET)
    options = demo.DemoOptions(users=4, payments=3, seed=5, exchanges=3, topups=2)
    summary = await run_demo(saga, options, nowhere, ledger=False)
    assert summary.ok, summary.problems
    assert not any(o.planned.scenario.startswith("no-liquidity") for o in summary.outcomes)
    assert summary.by_scenario()[("quote-reused", "REFUSED", "quote_used")] == 1
    assert any("no exchange beyond the USD liquidity" in note for note in summary.notes), summary.notes
    # No top-up, not even the liquidity funding for them, and no THB/RUB rate: a note says why.
    assert not any(o.planned.scenario.startswith("topup") for o in summary.outcomes)
    assert summary.topup_rate is None and summary.to_json()["topups"] is None
    assert any(f"SBP top-ups left out: no QP sandbox answers at {nowhere.url}" in n for n in summary.notes)
    # A QP sandbox that answers but refuses the secret leaves them out too; the fleet's secret is taken.
    refused = await demo.qp_preflight(demo.QpSandbox(psp.qp_url, "not-the-secret"))
    assert refused is not None and "refused the secret" in refused
    assert await demo.qp_preflight(qp_sandbox(psp)) is None
    # Something else at that address (here the gateway) is not taken for one.
    other = await demo.qp_preflight(demo.QpSandbox(saga.url, QP_SECRET))
    assert other is not None and f"what answers at {saga.url} is no QP sandbox" in other
    await assert_ledger_adds_up(saga)


def test_pm_demo_command_tops_up_thb_wallets_via_sbp_by_default_and_prints_them(
    psp: Psp, saga: SagaFleet
) -> None:
    """The command as `make up` users run it: three top-ups by default in THB, the QP sandbox's secret
    read from the environment as `pm up` sets it."""
    script = Path(sys.executable).with_name("pm")
    argv = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from pm_tools.cli.app import main; main()"]
    )
    options = ["--users", "4", "--payments", "4", "--withdrawals", "0", "--credits", "0", "--charges", "0"]
    done = subprocess.run(
        [*argv, "demo", "--gateway", saga.url, "--key-id", saga.admin.key_id, "--secret", saga.admin.secret]
        + ["--database-url", saga.database_url, "--exchanges", "0", "--qp-sandbox", psp.qp_url, *options],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "PM_QP_SANDBOX_SECRET": QP_SECRET},
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert re.search(r"SBP_TOPUP +│ SETTLED +│ - +│ +3 │", done.stdout), done.stdout
    for text in (
        "SBP top-ups at THB/RUB",
        "paid by SBP (principal + spread)",
        "credited to THB wallets, out of liquidity",
        "RUB liquidity as the settled intents leave it",
        "THB liquidity as the settled intents leave it",
        "ok: all",
    ):
        assert text in done.stdout, done.stdout
    assert "MISMATCH" not in done.stdout and "UNBALANCED" not in done.stdout
    assert "Exchanges at" not in done.stdout and "left out" not in done.stderr, done.stderr
