"""`pm demo`'s SBP top-ups on fabricated intents: the seeded plan (funded payees, the THB liquidity
funded for what they ask, drawn after the rest of the run), what a settled top-up leaves on the wallet
and on each liquidity account, the problems a price off its rate or a QR off its intent become, and
where the demo looks for the QP sandbox. No fleet: the run against one is tests/test_demo_fx.py."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from pm_client import api, fx_api
from pm_tools import demo, processes
from pm_tools.demo.summary import expected_balances, liquidity_moves, party_moves, problems
from pm_tools.demo.topup_plan import price, topup_plan
from pm_tools.demo.traffic import Planning

ALICE = demo.User("demo-r-000", "Alice", funded=True)
RATE = fx_api.SetRate(pair="THB/RUB", rate="2.5", spread_bps=100)


def topup(amount: int = 40_000, key: str = "t1") -> demo.Planned:
    return demo.Planned(key, "topup", "SBP_TOPUP", amount, demo.Sbp(), ALICE)


def intent_of(p: demo.Planned, state: str = "SETTLED", **figures: Any) -> api.Intent:
    """The intent the gateway makes of `p` at RATE: in roubles, with its exchange (`figures` override
    the exchange's figures; `amount`, the roubles collected)."""
    priced = price(RATE, p.amount)
    exchange = {
        "quoteId": str(uuid.uuid4()),
        "buyCurrency": "THB",
        "buyAmount": p.amount,
        "principal": priced.principal,
        "spread": priced.fee,
        "rate": RATE.rate,
        "pair": RATE.pair,
        "spreadBps": RATE.spread_bps,
    }
    amount = figures.pop("amount", priced.sell_amount)
    return msgspec.convert(
        {
            "id": exchange["quoteId"],
            "status": state,
            "type": "SBP_TOPUP",
            "amount": amount,
            "currency": "RUB",
            "from": {"kind": "sbp"},
            "to": {"kind": "user", "id": ALICE.id},
            "exchange": exchange | figures,
            "links": {"self": "/v1/intents/x"},
        },
        api.Intent,
    )


def qr(amount: int) -> api.Payment:
    link = f"https://qr.nspk.ru/AD100001?type=02&bank=100000000111&sum={amount}&cur=RUB&crc=AB12"
    return api.Payment(kind="qp_qr", link=link, psp_reference="AD100001")


def topped(p: demo.Planned, state: str = "SETTLED", **figures: Any) -> demo.Outcome:
    intent = intent_of(p, state, **figures)
    return demo.Outcome(p, intent=intent, payment=qr(intent.amount))


def test_the_plan_tops_up_funded_users_and_funds_the_thb_liquidity_for_them() -> None:
    options = demo.DemoOptions(users=6, payments=10, topups=5, seed=8)
    users = [demo.User(f"demo-r-{i:03d}", "Somchai Srisuk", funded=i < 4) for i in range(6)]
    planned = topup_plan(options, "r", random.Random(8), users)
    assert planned is not None and topup_plan(demo.DemoOptions(), "r", random.Random(8), users) is None
    # The rate is an exact decimal string (four decimals), roubles per baht; never a float.
    assert planned.rate.pair == demo.TOPUP_PAIR == "THB/RUB" and re.fullmatch(r"2\.\d{4}", planned.rate.rate)
    assert len(planned.topups) == 5 and len({p.key for p in planned.topups}) == 5
    for p in planned.topups:
        assert (p.type, p.scenario, p.payer) == ("SBP_TOPUP", "topup", demo.Sbp())
        assert isinstance(p.payee, demo.User) and p.payee.funded
        assert 10_000 <= p.amount <= 300_099 and p.money("THB") == ("RUB", "THB")
    (liquidity,) = planned.fundings
    assert (liquidity.scenario, liquidity.payee, liquidity.payer) == (
        "topup-liquidity-funding",
        demo.Liquidity(),
        None,
    )
    assert liquidity.money("THB") == ("THB", "THB")
    assert liquidity.amount > sum(p.amount for p in planned.topups)


def test_the_top_ups_are_drawn_after_the_rest_of_the_run() -> None:
    """A seed plans the same payments, exchanges and fundings with top-ups as without them."""
    base = demo.DemoOptions(users=6, payments=12, exchanges=4, credits=2, seed=13, run_id="r")
    without = Planning.of(base)
    with_topups = Planning.of(replace(base, topups=3))
    assert without.topups is None and with_topups.topups is not None
    assert (with_topups.payments, with_topups.fundings) == (without.payments, without.fundings)
    assert with_topups.fx == without.fx


def test_a_settled_top_up_credits_the_wallet_the_baht_asked_and_moves_both_liquidity_accounts() -> None:
    p = topup()
    fund = demo.Planned("f1", "topup-liquidity-funding", "ADJUSTMENT", 90_000, None, demo.Liquidity())
    funded = demo.Outcome(
        fund, intent=msgspec.structs.replace(intent_of(p), type="ADJUSTMENT", exchange=None)
    )
    failed = topped(topup(7_000, "t2"), "FAILED")
    outcomes = [funded, topped(p), failed]
    # 400.00 THB at 2.5 RUB a baht with 100 bp: 1,000.00 RUB exchanged and 10.00 RUB of spread.
    priced = price(RATE, 40_000)
    assert (priced.sell_amount, priced.principal, priced.fee) == (101_000, 100_000, 1_000)
    # The wallet gets exactly the baht asked (nobody's wallet pays: the payer is SBP).
    assert party_moves(outcomes, "THB") == {(ALICE.id, "THB"): 40_000}
    assert expected_balances([(ALICE.id, "THB")], outcomes, "THB") == {(ALICE.id, "THB"): 40_000}
    # The THB liquidity pays the baht; the principal goes into the RUB liquidity (the spread: revenue).
    assert liquidity_moves(outcomes, "THB") == {"THB": 90_000 - 40_000, "RUB": 100_000}
    assert problems([funded, outcomes[1]], []) == []
    summary = demo.DemoSummary("r", "THB", [ALICE], outcomes, [], 1.0)
    assert summary.topups() == demo.TopupFigures(1, 101_000, 100_000, 1_000, 40_000)
    assert summary.exchanges() == [] and summary.moved("SBP_TOPUP") == 40_000
    assert summary.to_json()["topups"] is None  # no rate set: no top-ups section
    summary.topup_rate = msgspec.convert(
        {
            "id": 3,
            "pair": "THB/RUB",
            "rate": "2.5",
            "spreadBps": 100,
            "source": "pm demo",
            "validFrom": "2025-01-01T00:00:00Z",
            "createdBy": "pk_x",
            "createdAt": "2025-01-01T00:00:00Z",
        },
        fx_api.Rate,
    )
    section = summary.to_json()["topups"]
    assert isinstance(section, dict) and (section["settled"], section["collected"], section["bought"]) == (
        1,
        101_000,
        40_000,
    )
    assert section["rate"] == {"id": 3, "pair": "THB/RUB", "rate": "2.5", "spreadBps": 100}


@pytest.mark.parametrize(
    ("figures", "found"),
    [
        ({"principal": 99_999}, "where its rate THB/RUB 2.5 and spread 100 bp price 101000"),
        ({"amount": 100_999}, "collects 100999"),
        ({"buyAmount": 39_999}, "made in RUB for 39999 THB, not RUB for 40000 THB"),
        ({"buyCurrency": "USD"}, "not RUB for 40000 THB"),
    ],
)
def test_a_top_up_priced_otherwise_than_its_rate_or_asked_is_a_problem(
    figures: dict[str, Any], found: str
) -> None:
    (problem,) = problems([topped(topup(), **figures)], [])
    assert "SBP_TOPUP t1 (topup, 40000)" in problem and found in problem, problem


def test_a_top_up_whose_qr_does_not_carry_its_roubles_or_without_an_exchange_is_a_problem() -> None:
    p = topup()
    for amount in (100_000, 1_010_001):  # another sum, or one that only starts with the right one
        (problem,) = problems([demo.Outcome(p, intent=intent_of(p), payment=qr(amount))], [])
        assert "does not carry 101000 RUB" in problem
    (problem,) = problems([demo.Outcome(p, intent=intent_of(p), payment=None)], [])
    assert "showed no SBP QR" in problem
    bare = msgspec.structs.replace(intent_of(p), exchange=None)
    (problem,) = problems([demo.Outcome(p, intent=bare, payment=qr(bare.amount))], [])
    assert "no exchange on the intent" in problem
    # A top-up that failed is a problem of its state alone.
    (problem,) = problems([topped(p, "FAILED")], [])
    assert "expected SETTLED, got FAILED" in problem


def test_top_ups_are_thb_only() -> None:
    with pytest.raises(demo.DemoError, match="tops up THB wallets via SBP") as refused:
        demo.DemoOptions(currency="USD", topups=1).check()
    assert refused.value.exit_code == 2
    with pytest.raises(demo.DemoError, match="--topups must be 0 or more"):
        demo.DemoOptions(topups=-1).check()


def test_the_qp_sandbox_is_found_as_pm_up_runs_it() -> None:
    # `pm up`'s defaults: this host on port 9202, the secret the sandbox, adapter-qp and the gateway share.
    assert demo.QpSandbox.resolve(None, None, {}) == demo.QpSandbox(
        "http://127.0.0.1:9202", "qp-sandbox-secret"
    )
    env = {"PM_QP_SANDBOX_PORT": "9300", "PM_GATEWAY_QP_CALLBACK_SECRET": "g", "PM_ADAPTER_QP_QP_SECRET": "a"}
    assert demo.QpSandbox.resolve(None, None, env) == demo.QpSandbox("http://127.0.0.1:9300", "a")
    assert demo.QpSandbox.resolve(None, None, env | {"PM_QP_SANDBOX_SECRET": "s"}).secret == "s"
    given = demo.QpSandbox.resolve("http://qp.test:1/", "x", env)
    assert given == demo.QpSandbox("http://qp.test:1", "x")


async def test_without_a_qp_sandbox_the_top_ups_are_left_out_with_a_note() -> None:
    assert "no QP sandbox to pay their QRs in was given" in (await demo.qp_preflight(None) or "")
    nowhere = demo.QpSandbox(processes.base_url(processes.free_port()), "x")
    note = await demo.qp_preflight(nowhere)
    assert note is not None and f"no QP sandbox answers at {nowhere.url}" in note
