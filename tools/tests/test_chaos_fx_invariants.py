"""The chaos run's invariants (pm_tools.chaos.invariants) on fabricated exchanges: a settled exchange's
three legs over two ledgers, its moves on the user's wallets in both currencies and on the liquidity
accounts, a failed one with nothing posted on either ledger, and liquidity never below zero; each
check catches the violation it exists for, naming the offender. No processes."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace

import pytest

from pm_shared.ledger import chart
from pm_tools.chaos import invariants as inv
from pm_tools.chaos.rows import (
    AccountFact,
    IntentFact,
    TransferFact,
    account_of,
    operator_account,
    tid,
    wallet_account,
)

THB, USD = chart.ledger_of("THB"), chart.ledger_of("USD")
ROUTE = ["validate", "price", "reserve_limits", "authorize", "settle"]
LIQUIDITY = {c: operator_account(chart.Code.FX_LIQUIDITY, c) for c in ("THB", "USD")}
REVENUE = operator_account(chart.Code.FEE_REVENUE, "THB")


def exchange(
    state: str = "SETTLED", *, spread: int = 498, fees: list[dict[str, object]] | None = None
) -> IntentFact:
    """alice sells 1,000.00 THB (principal 995.02 + spread) for 27.78 USD; the intent's id is its quote's."""
    intent_id = str(uuid.uuid4())
    return IntentFact(
        id=intent_id,
        type="FX_EXCHANGE",
        state=state,
        failure_code="LIQUIDITY_INSUFFICIENT" if state == "FAILED" else None,
        amount=99_502 + spread,
        currency="THB",
        source={"kind": "user", "id": "alice"},
        target={"kind": "user", "id": "alice"},
        fees=fees or [],
        route=ROUTE,
        exchange={
            "quoteId": intent_id,
            "buyCurrency": "USD",
            "buyAmount": 2_778,
            "principal": 99_502,
            "spread": spread,
            "rate": "35.8125",
            "pair": "USD/THB",
            "spreadBps": 50,
        },
    )


def legs_of(intent: IntentFact) -> list[TransferFact]:
    """What the ledger holds for a rightly settled intent: each leg pending then posted."""
    out = []
    for transfer_id, leg in inv.expected_legs(intent).items():
        assert leg.debit is not None and leg.credit is not None
        out.append(
            TransferFact(
                transfer_id,
                intent.id,
                leg.amount,
                {"pending": inv.PENDING, "post": inv.POST, "plain": 0}[leg.kind],
                leg.ledger,
                pending_status=inv.STATUS_POSTED if leg.kind == "pending" else None,
                debit_account_id=leg.debit,
                credit_account_id=leg.credit,
                code=leg.code,
            )
        )
    return out


def test_an_exchange_has_principal_spread_and_buy_on_two_ledgers() -> None:
    intent = exchange()
    legs = inv.expected_legs(intent)
    alice_thb, alice_usd = wallet_account("alice", "THB"), wallet_account("alice", "USD")
    shown = {
        name: (legs[tid(intent.id, name)].debit, legs[tid(intent.id, name)].credit)
        for name in ("principal", "spread", "buy")
    }
    assert shown == {
        "principal": (alice_thb, LIQUIDITY["THB"]),
        "spread": (alice_thb, REVENUE),
        "buy": (LIQUIDITY["USD"], alice_usd),
    }
    assert [(leg.amount, leg.code, leg.ledger) for leg in legs.values() if leg.kind == "pending"] == [
        (99_502, 7, THB),
        (498, 10, THB),
        (2_778, 7, USD),
    ]
    assert len(legs) == 6  # each posted
    assert inv.settled_legs_wrong({intent.id: intent}, legs_of(intent)) == {}
    # No spread: no spread leg.
    flat = exchange(spread=0)
    assert tid(flat.id, "spread") not in inv.expected_legs(flat)
    assert inv.settled_legs_wrong({flat.id: flat}, legs_of(flat)) == {}
    # A CEL fee on an exchange is in the sold currency, from the user's wallet in it.
    fee = {"ruleId": "fx-pre", "ruleVersion": 1, "amount": 100, "currency": "THB", "timing": "PRE"}
    charged = exchange(fees=[fee])
    fee_leg = inv.expected_legs(charged)[tid(charged.id, "fee:fx-pre")]
    assert (fee_leg.debit, fee_leg.credit, fee_leg.ledger, fee_leg.kind) == (
        alice_thb,
        REVENUE,
        THB,
        "pending",
    )


@pytest.mark.parametrize(
    "defect",
    ["buy_on_the_sold_ledger", "buy_to_the_thb_wallet", "spread_missing", "other_intent", "principal_as_p2p"],
)
def test_settled_legs_wrong_catches_an_exchange_laid_out_otherwise(defect: str) -> None:
    intent = exchange()
    legs = legs_of(intent)
    buy, post = tid(intent.id, "buy"), tid(intent.id, "buy:post")
    if defect == "buy_on_the_sold_ledger":
        legs = [replace(t, ledger=THB) if t.id in (buy, post) else t for t in legs]
    elif defect == "buy_to_the_thb_wallet":
        legs = [
            replace(t, credit_account_id=wallet_account("alice", "THB")) if t.id in (buy, post) else t
            for t in legs
        ]
    elif defect == "spread_missing":
        legs = [t for t in legs if t.id not in (tid(intent.id, "spread"), tid(intent.id, "spread:post"))]
    elif defect == "other_intent":
        # The bought leg names another intent in user_data_128: missing here (and an orphan there).
        legs = [replace(t, intent_id=str(uuid.uuid4())) if t.id == post else t for t in legs]
    else:
        legs = [replace(t, code=1) if t.id == tid(intent.id, "principal") else t for t in legs]
    found = inv.settled_legs_wrong({intent.id: intent}, legs)
    assert list(found) == [intent.id], defect


def test_an_exchange_must_carry_out_its_own_quote() -> None:
    intent = exchange()
    assert intent.exchange is not None
    other = replace(intent, exchange={**intent.exchange, "quoteId": str(uuid.uuid4())})
    found = inv.settled_legs_wrong({other.id: other}, legs_of(intent))
    assert "an exchange's id is its quote's" in found[other.id]


def test_a_failed_exchange_posts_nothing_on_either_ledger() -> None:
    failed = exchange("FAILED")
    voided = [replace(t, pending_status=inv.STATUS_VOIDED) for t in legs_of(failed) if t.flags == inv.PENDING]
    assert inv.failed_legs_wrong({failed.id: failed}, voided) == {}
    # The bought amount posted on the USD ledger though the intent failed.
    posted = next(t for t in legs_of(failed) if t.id == tid(failed.id, "buy:post"))
    found = inv.failed_legs_wrong({failed.id: failed}, [*voided, posted])
    assert list(found) == [failed.id] and "LIQUIDITY_INSUFFICIENT" in found[failed.id]
    assert inv.expected_balances([failed]) == Counter()


def test_exchanges_move_wallets_per_currency_and_the_liquidity_accounts() -> None:
    fund_usd = IntentFact(
        str(uuid.uuid4()),
        "ADJUSTMENT",
        "SETTLED",
        None,
        10_000,
        "USD",
        {"kind": "operator"},
        {"kind": "liquidity"},
    )
    paid, failed = exchange(), exchange("FAILED")
    intents = {i.id: i for i in (fund_usd, paid, failed)}
    assert inv.expected_balances(intents.values()) == Counter(
        {
            ("user", "alice", "THB"): -100_000,
            ("user", "alice", "USD"): 2_778,
            ("liquidity", "", "THB"): 99_502,
            ("liquidity", "", "USD"): 10_000 - 2_778,
        }
    )
    alice_thb, alice_usd = wallet_account("alice", "THB"), wallet_account("alice", "USD")
    owned = {("user", "alice", "THB"): alice_thb, ("user", "alice", "USD"): alice_usd}
    rows = [
        AccountFact(alice_thb, THB, 1, 0, 100_000, 0, 100_000),  # alice's own funding is no intent here
        AccountFact(alice_usd, USD, 1, 0, 0, 0, 2_778),
        AccountFact(LIQUIDITY["THB"], THB, 30, 0, 0, 0, 99_502),
        AccountFact(LIQUIDITY["USD"], USD, 30, 0, 2_778, 0, 10_000),
    ]
    assert list(inv.balances_disagree(intents, rows, owned)) == [alice_thb]
    fair = [replace(rows[0], credits_posted=0), *rows[1:]]
    assert inv.balances_disagree(intents, fair, owned) == {}
    # The bought amount paid twice out of liquidity: the USD liquidity account is the offender.
    twice = [*fair[:3], replace(rows[3], debits_posted=5_556)]
    found = inv.balances_disagree(intents, twice, owned)
    assert list(found) == [LIQUIDITY["USD"]] and "liquidity account (USD)" in found[LIQUIDITY["USD"]]


def test_liquidity_never_below_zero_counting_what_it_holds_pending() -> None:
    fine = AccountFact(LIQUIDITY["USD"], USD, 30, 2_000, 5_000, 0, 7_000)
    held = AccountFact(LIQUIDITY["THB"], THB, 30, 2_001, 5_000, 0, 7_000)
    other = AccountFact(account_of("operator", "fee_revenue", 10, "THB"), THB, 10, 0, 9, 0, 0)
    found = inv.accounts_below_zero([fine, held, other])
    assert list(found) == [held.id] and "liquidity account" in found[held.id]
