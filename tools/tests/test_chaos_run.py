"""The chaos run's seeded plan (every intent type, the merchant's traffic with it), its seeded schedule,
the `pm chaos` command's exits and the report of a spurious answer. No processes: the run itself is
tests/test_chaos.py."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pm_client.api import LiquidityParty, MerchantParty, UserParty
from pm_shared.fx import pricing
from pm_tools.chaos.load import IPPS_FAULT_AMOUNTS, MAX_CHARGE, QUOTE_PENDING, RATE, plan
from pm_tools.chaos.report import Report
from pm_tools.chaos.run import gateway_error
from pm_tools.chaos.schedule import KILLABLE, schedule
from pm_tools.chaos.send import payment_request

# -- the plan and the schedule are seeded -------------------------------------------------------------


def test_the_plan_is_the_same_for_a_seed_and_covers_every_type_and_fault() -> None:
    first, again, other = plan(3, 400, "r"), plan(3, 400, "r"), plan(4, 400, "r")
    assert first == again and first != other
    assert len(first.funding) + len(first.intents) == 400
    types = {p.body.type for p in first.intents + first.funding}
    assert types == {
        "ADJUSTMENT",
        "P2P",
        "PROMPTPAY_WITHDRAWAL",
        "SBP_TOPUP",
        "MINIAPP_CREDIT",
        "MINIAPP_CHARGE",
        "FX_EXCHANGE",
    }
    scenarios = {p.scenario for p in first.intents}
    assert {"fx", "fx-back", "fx-no-liquidity"} <= scenarios
    assert {"p2p-empty", "topup-expire", "withdrawal-bad-proxy"} <= scenarios
    assert {"credit", "credit-overdraw", "charge", "charge-empty"} <= scenarios
    assert any(s.removeprefix("withdrawal-") in IPPS_FAULT_AMOUNTS.values() for s in scenarios)
    assert len({p.key for p in first.funding + first.intents}) == 400  # one key per intent


def test_the_merchant_is_funded_for_its_credits_and_its_charges_are_payment_requests() -> None:
    the_plan = plan(3, 400, "r")
    shop = the_plan.shop
    (funding,) = [p for p in the_plan.funding if p.scenario == "merchant-funding"]
    assert funding.body.to == MerchantParty(id=shop.merchant_id) and funding.via == "admin"
    cashback = [p for p in the_plan.intents if p.body.type == "MINIAPP_CREDIT"]
    charges = [p for p in the_plan.intents if p.body.type == "MINIAPP_CHARGE"]
    assert cashback and charges
    assert all(p.via == "merchant" and p.body.miniapp_id == shop.miniapp_id for p in cashback)
    assert all(p.via == "charge" and 0 < p.body.amount <= MAX_CHARGE for p in charges)
    # The funding covers every credit meant to settle, and an overdraw exceeds all the merchant holds.
    assert sum(p.body.amount for p in cashback if p.scenario == "credit") < funding.body.amount
    holds = funding.body.amount + sum(p.body.amount for p in charges)
    assert all(p.body.amount > holds for p in cashback if p.scenario == "credit-overdraw")
    asked = payment_request(charges[0].body)
    assert (asked.user_id, asked.amount, asked.miniapp_id) == (
        charges[0].body.from_.id if isinstance(charges[0].body.from_, UserParty) else None,
        charges[0].body.amount,
        shop.miniapp_id,
    )
    (commission,) = [r for r in the_plan.fee_rules if r.operation_type == "MINIAPP_CHARGE"]
    assert (commission.payer, commission.timing) == ("target", "POST")
    assert shop.merchant_id in commission.condition


def test_exchanges_are_funded_quoted_when_sent_and_some_go_beyond_any_liquidity() -> None:
    the_plan = plan(3, 400, "r")
    assert (
        the_plan.rates == [RATE] and the_plan.usd_users and set(the_plan.usd_users) <= set(the_plan.thb_users)
    )
    rate = pricing.Rate(pricing.Pair.parse(RATE.pair), Decimal(RATE.rate), RATE.spread_bps)
    fundings = {
        p.scenario: p for p in the_plan.funding if p.body.currency == "USD" or p.scenario.startswith("liq")
    }
    liquidity = {
        p.body.currency: p.body.amount for p in the_plan.funding if isinstance(p.body.to, LiquidityParty)
    }
    assert set(liquidity) == {"THB", "USD"} and "usd-funding" in fundings
    exchanges = [p for p in the_plan.intents if p.body.type == "FX_EXCHANGE"]
    bought: Counter[str] = Counter()
    sold_usd = 0
    for p in exchanges:
        assert p.quote is not None and p.body.quote_id == QUOTE_PENDING and p.via == "admin"
        assert p.body.from_ == p.body.to and isinstance(p.body.from_, UserParty)
        assert p.body.from_.id in the_plan.usd_users and p.quote.owner_id == p.body.from_.id
        assert (p.quote.sell.currency, p.quote.sell.amount) == (p.body.currency, p.body.amount)
        buy = "USD" if p.body.currency == "THB" else "THB"
        price = pricing.selling(rate, p.body.currency, buy, p.body.amount, amount_max=10**12)
        if p.scenario == "fx-no-liquidity":
            continue
        bought[buy] += price.buy_amount
        sold_usd += price.principal if p.body.currency == "USD" else 0
    # Each liquidity account holds what the exchanges buy; one beyond it buys more than the USD one
    # could ever hold (its funding and every dollar sold into it).
    assert liquidity["USD"] > bought["USD"] and liquidity["THB"] > bought["THB"]
    for p in (p for p in exchanges if p.scenario == "fx-no-liquidity"):
        beyond = pricing.selling(rate, "THB", "USD", p.body.amount, amount_max=10**12).buy_amount
        assert beyond > liquidity["USD"] + sold_usd


def test_the_schedule_is_seeded_kills_every_service_first_and_restarts_each_server_once() -> None:
    actions = schedule(5, len(KILLABLE))
    assert actions == schedule(5, len(KILLABLE)) and actions != schedule(6, len(KILLABLE))
    assert {a.target for a in actions if a.kind == "kill"} == set(KILLABLE)
    assert Counter(a.kind for a in actions) == Counter({"kill": len(KILLABLE), "redis": 1, "postgres": 1})
    assert [a.at for a in actions] == sorted(a.at for a in actions)
    assert all(0.0 < a.at < 0.9 for a in actions)


def test_pm_chaos_exits_2_with_a_clear_message_without_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from pm_tools.cli.app import app

    monkeypatch.setenv("PATH", "/nonexistent")
    result = CliRunner().invoke(app, ["chaos", "--seed", "1"])
    assert result.exit_code == 2, result.output
    assert "redis-server is not installed" in result.output


def test_pm_chaos_exits_1_naming_the_offenders_and_prints_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from pm_tools.cli import chaos_cmd
    from pm_tools.cli.app import app

    stuck = "01a20f63-c299-75be-bc0b-3804dcbf5ce5"

    async def failing(options: object) -> Report:
        report = Report(seed=9, planned=2, accepted=2, intents_in_db=2)
        report.by_state = Counter({("P2P", "SETTLED", ""): 1, ("P2P", "AUTHORIZED", ""): 1})
        report.invariants = {"every accepted intent terminal": {stuck: "still AUTHORIZED"}, "other": {}}
        return report

    monkeypatch.setattr(chaos_cmd, "run_chaos", failing)
    result = CliRunner().invoke(app, ["chaos", "--seed", "9"])
    assert result.exit_code == 1, result.output
    assert stuck in result.output and "1 invariant(s) failed" in result.output

    result = CliRunner().invoke(app, ["chaos", "--seed", "9", "--json"])
    assert result.exit_code == 1
    body = result.stdout[: result.stdout.rindex("}") + 1]
    decoded = json.loads(body)
    assert decoded["ok"] is False and decoded["seed"] == 9
    assert decoded["invariants"][0] == {
        "name": "every accepted intent terminal",
        "holds": False,
        "offenders": {stuck: "still AUTHORIZED"},
    }


def test_a_spurious_answer_is_reported_with_the_exception_the_gateway_logged(tmp_path: Path) -> None:
    logged = {
        "level": "ERROR",
        "msg": "unexpected error in POST /v1/intents (request 71f522031fb23d0db5dd985a)",
        "exc": "Traceback (most recent call last):\n  File ...\n"
        "asyncpg.exceptions._base.InternalClientError: cannot switch to state 12",
    }
    (tmp_path / "gateway.log").write_text(
        "not json (request 71f522031fb23d0db5dd985a)\n"
        + json.dumps({"msg": "POST /v1/intents 500 (request 0000000000000000)", "exc": "Other: no"})
        + "\n"
        + json.dumps(logged)
        + "\n"
    )
    assert gateway_error(tmp_path, "71f522031fb23d0db5dd985a") == (
        "asyncpg.exceptions._base.InternalClientError: cannot switch to state 12"
    )
    assert gateway_error(tmp_path, "ffffffffffffffff") is None
