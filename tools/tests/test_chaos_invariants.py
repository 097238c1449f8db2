"""The chaos run's invariant checks (pm_tools.chaos.invariants) on fabricated rows: each one passes a
consistent picture and catches the violation it exists for, naming the offender. No processes."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace

import pytest

from pm_shared.ledger import chart
from pm_tools.chaos import invariants as inv
from pm_tools.chaos.report import Report
from pm_tools.chaos.rows import (
    AccountFact,
    AlertFact,
    DeadLetterFact,
    Facts,
    IntentFact,
    PendingEntry,
    PspFact,
    TransferFact,
    merchant_account,
    operator_account,
    tid,
    wallet_account,
)

THB = chart.ledger_of("THB")
FEE = {
    "ruleId": "r-pre",
    "ruleVersion": 1,
    "amount": 100,
    "currency": "THB",
    "timing": "PRE",
    "payer": "source",
}
POST_FEE = {"ruleId": "r-post", "ruleVersion": 1, "amount": 200, "currency": "THB", "timing": "POST"}
ZERO = str(uuid.UUID(int=0))


def _id() -> str:
    return str(uuid.uuid4())


def p2p(
    state: str = "SETTLED", *, amount: int = 10_000, fees: list[dict[str, object]] | None = None
) -> IntentFact:
    return IntentFact(
        id=_id(),
        type="P2P",
        state=state,
        failure_code="INSUFFICIENT_FUNDS" if state == "FAILED" else None,
        amount=amount,
        currency="THB",
        source={"kind": "user", "id": "alice"},
        target={"kind": "user", "id": "bob"},
        fees=[FEE, POST_FEE] if fees is None else fees,
        route=["validate", "price", "reserve_limits", "authorize", "settle"],
    )


def topup(amount: int = 5_000) -> IntentFact:
    return IntentFact(
        id=_id(),
        type="SBP_TOPUP",
        state="SETTLED",
        failure_code=None,
        amount=amount,
        currency="RUB",
        source={"kind": "sbp"},
        target={"kind": "user", "id": "ivan"},
        route=["validate", "price", "psp_collect", "settle"],
    )


def legs_of(intent: IntentFact) -> list[TransferFact]:
    """What the ledger holds for a rightly settled intent."""
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


def by_id(*intents: IntentFact) -> dict[str, IntentFact]:
    return {i.id: i for i in intents}


# -- every accepted intent terminal -------------------------------------------------------------------


def test_not_terminal_names_every_open_intent() -> None:
    done, failed = p2p(), p2p("FAILED")
    stuck = IntentFact(**{**done.__dict__, "id": _id(), "state": "AUTHORIZED", "step": "psp_payout"})
    assert inv.not_terminal(by_id(done, failed)) == {}
    assert list(inv.not_terminal(by_id(done, failed, stuck))) == [stuck.id]
    assert "AUTHORIZED" in inv.not_terminal(by_id(stuck))[stuck.id]


# -- per ledger debits = credits; no wallet below zero ------------------------------------------------


def account(ledger: int = THB, code: int = 1, **balances: int) -> AccountFact:
    fields = {"debits_pending": 0, "debits_posted": 0, "credits_pending": 0, "credits_posted": 0, **balances}
    return AccountFact(id=_id(), ledger=ledger, code=code, **fields)


def test_unbalanced_ledgers_compares_posted_and_pending_sums_per_ledger() -> None:
    equity = account(code=90, debits_posted=1_000)
    wallet = account(credits_posted=1_000)
    assert inv.unbalanced_ledgers([equity, wallet]) == {}
    lost = account(credits_posted=1)
    assert list(inv.unbalanced_ledgers([equity, wallet, lost])) == [f"ledger {THB}"]
    held = account(debits_pending=5)
    assert list(inv.unbalanced_ledgers([equity, wallet, held])) == [f"ledger {THB}"]
    other = account(ledger=643, credits_posted=7)  # another ledger's imbalance is that ledger's
    assert list(inv.unbalanced_ledgers([equity, wallet, other])) == ["ledger 643"]


def test_accounts_below_zero_counts_pending_debits_for_wallets_and_merchants_not_the_operator() -> None:
    fine = account(credits_posted=100, debits_posted=60, debits_pending=40)
    overdrawn = account(credits_posted=100, debits_posted=101)
    over_held = account(credits_posted=100, debits_posted=60, debits_pending=41)
    operator = account(code=90, debits_posted=10_000)
    shop = account(code=2, credits_posted=5_000, debits_posted=5_000)
    shop_overdrawn = account(code=2, credits_posted=5_000, debits_posted=4_000, debits_pending=1_001)
    found = inv.accounts_below_zero([fine, overdrawn, over_held, operator, shop, shop_overdrawn])
    assert set(found) == {overdrawn.id, over_held.id, shop_overdrawn.id}
    assert "merchant account" in found[shop_overdrawn.id] and "wallet" in found[overdrawn.id]


def test_balances_disagree_when_a_wallet_is_not_what_settled_intents_moved() -> None:
    paid, failed = p2p(amount=10_000), p2p("FAILED", amount=50_000)
    alice, bob = wallet_account("alice", "THB"), wallet_account("bob", "THB")
    wallets = {("user", "alice", "THB"): alice, ("user", "bob", "THB"): bob}
    # alice was funded 20,000 by an adjustment, then paid 10,000 + 300 of fees to bob.
    fund = IntentFact(
        _id(),
        "ADJUSTMENT",
        "SETTLED",
        None,
        20_000,
        "THB",
        {"kind": "operator"},
        {"kind": "user", "id": "alice"},
    )
    rows = [
        AccountFact(alice, THB, 1, 0, 10_300, 0, 20_000),
        AccountFact(bob, THB, 1, 0, 0, 0, 10_000),
    ]
    assert inv.expected_balances([paid, failed, fund]) == Counter(
        {("user", "alice", "THB"): 9_700, ("user", "bob", "THB"): 10_000}
    )
    assert inv.balances_disagree(by_id(paid, failed, fund), rows, wallets) == {}
    doubled = [rows[0], AccountFact(bob, THB, 1, 0, 0, 0, 20_000)]  # a transfer applied twice
    assert list(inv.balances_disagree(by_id(paid, failed, fund), doubled, wallets)) == [bob]


def test_orphan_transfers_are_transfers_no_intent_made() -> None:
    intent = p2p()
    legs = legs_of(intent)
    stray = TransferFact(_id(), ZERO, 500, 0, THB)
    assert inv.orphan_transfers(by_id(intent), legs) == {}
    assert list(inv.orphan_transfers(by_id(intent), [*legs, stray])) == [stray.id]


# -- merchants: their accounts never below zero, and holding exactly what their intents moved ---------

COMMISSION = {
    "ruleId": "shop-commission",
    "ruleVersion": 1,
    "amount": 300,
    "currency": "THB",
    "timing": "POST",
    "payer": "target",
}
HELD_ROUTE = ["validate", "price", "reserve_limits", "authorize", "settle"]


def charge(state: str = "SETTLED", *, amount: int = 20_000) -> IntentFact:
    """alice pays the merchant `shop` (a confirmed payment request); the merchant pays its commission."""
    return IntentFact(
        id=_id(),
        type="MINIAPP_CHARGE",
        state=state,
        failure_code="INSUFFICIENT_FUNDS" if state == "FAILED" else None,
        amount=amount,
        currency="THB",
        source={"kind": "user", "id": "alice"},
        target={"kind": "merchant", "id": "shop"},
        fees=[COMMISSION] if state == "SETTLED" else [],
        route=HELD_ROUTE,
    )


def credit(state: str = "SETTLED", *, amount: int = 5_000) -> IntentFact:
    """The merchant `shop` credits bob through its mini-app."""
    return IntentFact(
        id=_id(),
        type="MINIAPP_CREDIT",
        state=state,
        failure_code="INSUFFICIENT_FUNDS" if state == "FAILED" else None,
        amount=amount,
        currency="THB",
        source={"kind": "merchant", "id": "shop"},
        target={"kind": "user", "id": "bob"},
        route=HELD_ROUTE,
    )


def test_merchant_balances_are_what_funding_charges_commissions_and_credits_leave() -> None:
    fund = IntentFact(
        _id(),
        "ADJUSTMENT",
        "SETTLED",
        None,
        10_000,
        "THB",
        {"kind": "operator"},
        {"kind": "merchant", "id": "shop"},
    )
    paid, credited, overdrawn = charge(), credit(), credit("FAILED", amount=10**11)
    intents = by_id(fund, paid, credited, overdrawn)
    assert inv.expected_balances(intents.values()) == Counter(
        {
            # 10,000 funded + 20,000 charged - 300 commission - 5,000 credited.
            ("merchant", "shop", "THB"): 24_700,
            ("user", "alice", "THB"): -20_000,
            ("user", "bob", "THB"): 5_000,
        }
    )
    shop, alice, bob = (
        merchant_account("shop", "THB"),
        wallet_account("alice", "THB"),
        wallet_account("bob", "THB"),
    )
    owned = {("merchant", "shop", "THB"): shop, ("user", "alice", "THB"): alice, ("user", "bob", "THB"): bob}
    rows = [
        AccountFact(shop, THB, 2, 0, 5_300, 0, 30_000),
        AccountFact(alice, THB, 1, 0, 20_000, 0, 20_000),
        AccountFact(bob, THB, 1, 0, 0, 0, 5_000),
    ]
    # alice's own funding is not among these intents: her wallet is checked against them alone.
    assert list(inv.balances_disagree(intents, rows, owned)) == [alice]
    fair = [rows[0], AccountFact(alice, THB, 1, 0, 20_000, 0, 0), rows[2]]
    assert inv.balances_disagree(intents, fair, owned) == {}
    # The commission taken twice; and a merchant account PM did not map is still checked (by its id).
    twice = [AccountFact(shop, THB, 2, 0, 5_600, 0, 30_000), *fair[1:]]
    found = inv.balances_disagree(intents, twice, owned)
    assert list(found) == [shop] and "merchant account of shop" in found[shop]
    unmapped = {k: v for k, v in owned.items() if k[0] == "user"}
    assert list(inv.balances_disagree(intents, twice, unmapped)) == [shop]


def test_merchant_legs_run_between_its_account_and_the_wallet_with_their_codes() -> None:
    paid, credited = charge(), credit()
    legs = legs_of(paid) + legs_of(credited)
    assert inv.settled_legs_wrong(by_id(paid, credited), legs) == {}
    shop, alice, bob = (
        merchant_account("shop", "THB"),
        wallet_account("alice", "THB"),
        wallet_account("bob", "THB"),
    )
    charged = inv.expected_legs(paid)
    principal, fee = charged[tid(paid.id, "principal")], charged[tid(paid.id, "fee:shop-commission")]
    assert (principal.kind, principal.debit, principal.credit, principal.code) == ("pending", alice, shop, 5)
    revenue = operator_account(chart.Code.FEE_REVENUE, "THB")
    # The commission: paid by the merchant (the target), at settlement, into fee revenue.
    assert (fee.kind, fee.amount, fee.debit, fee.credit, fee.code) == ("plain", 300, shop, revenue, 10)
    back = inv.expected_legs(credited)[tid(credited.id, "principal")]
    assert (back.debit, back.credit, back.code) == (shop, bob, 6)

    fee_id, credit_id = tid(paid.id, "fee:shop-commission"), tid(credited.id, "principal")
    from_the_user = [replace(t, debit_account_id=alice) if t.id == fee_id else t for t in legs]
    assert list(inv.settled_legs_wrong(by_id(paid, credited), from_the_user)) == [paid.id]
    as_a_charge = [replace(t, code=5) if t.id == credit_id else t for t in legs]
    found = inv.settled_legs_wrong(by_id(paid, credited), as_a_charge)
    assert list(found) == [credited.id] and "code 5, expected 6" in found[credited.id]
    to_someone_else = [replace(t, credit_account_id=alice) if t.id == credit_id else t for t in legs]
    assert list(inv.settled_legs_wrong(by_id(paid, credited), to_someone_else)) == [credited.id]


# -- SETTLED ↔ exactly its posted legs; FAILED ↔ none posted, none pending ------------------------------


def test_settled_legs_hold_for_held_and_outright_intents() -> None:
    held, outright = p2p(), topup()
    # P2P: principal and PRE fee pending then posted, POST fee outright; a top-up: principal outright.
    assert {leg.kind for leg in inv.expected_legs(held).values()} == {"pending", "post", "plain"}
    assert [(leg.kind, leg.amount) for leg in inv.expected_legs(outright).values()] == [
        ("plain", outright.amount)
    ]
    assert inv.settled_legs_wrong(by_id(held, outright), legs_of(held) + legs_of(outright)) == {}


@pytest.mark.parametrize(
    "defect", ["missing_post", "wrong_amount", "extra_void", "still_pending", "fee_missing"]
)
def test_settled_legs_wrong_catches_every_kind_of_defect(defect: str) -> None:
    intent = p2p()
    legs = legs_of(intent)
    principal, post = tid(intent.id, "principal"), tid(intent.id, "principal:post")
    if defect == "missing_post":
        legs = [t for t in legs if t.id != post]
    elif defect == "wrong_amount":
        legs = [
            TransferFact(t.id, t.intent_id, t.amount + 1, t.flags, t.ledger) if t.id == post else t
            for t in legs
        ]
    elif defect == "extra_void":
        legs.append(TransferFact(tid(intent.id, "principal:void"), intent.id, intent.amount, inv.VOID, THB))
    elif defect == "still_pending":
        legs = [
            TransferFact(t.id, t.intent_id, t.amount, t.flags, t.ledger, pending_status=inv.STATUS_PENDING)
            if t.id == principal
            else t
            for t in legs
        ]
    else:
        legs = [t for t in legs if t.id != tid(intent.id, "fee:r-post")]
    found = inv.settled_legs_wrong(by_id(intent), legs)
    assert list(found) == [intent.id], defect


def test_failed_legs_wrong_catches_a_posted_leg_and_an_open_hold() -> None:
    voided, never_held = p2p("FAILED"), p2p("FAILED")
    pending = TransferFact(
        tid(voided.id, "principal"),
        voided.id,
        voided.amount,
        inv.PENDING,
        THB,
        pending_status=inv.STATUS_VOIDED,
    )
    void = TransferFact(tid(voided.id, "principal:void"), voided.id, voided.amount, inv.VOID, THB)
    assert inv.failed_legs_wrong(by_id(voided, never_held), [pending, void]) == {}

    open_hold = TransferFact(
        pending.id, voided.id, voided.amount, inv.PENDING, THB, pending_status=inv.STATUS_PENDING
    )
    assert list(inv.failed_legs_wrong(by_id(voided), [open_hold])) == [voided.id]
    posted = TransferFact(tid(voided.id, "principal:post"), voided.id, voided.amount, inv.POST, THB)
    assert list(inv.failed_legs_wrong(by_id(voided), [pending, posted])) == [voided.id]
    outright = TransferFact(tid(never_held.id, "fee:r-post"), never_held.id, 200, 0, THB)
    assert list(inv.failed_legs_wrong(by_id(never_held), [outright])) == [never_held.id]


def test_payouts_wrong_catches_a_settled_withdrawal_unpaid_a_failed_one_paid_and_a_total_off() -> None:
    def withdrawal(state: str, amount: int) -> IntentFact:
        code = "PSP_DECLINED" if state == "FAILED" else None
        return IntentFact(
            _id(), "PROMPTPAY_WITHDRAWAL", state, code, amount, "THB", {"kind": "user", "id": "a"}, {}
        )

    paid, declined, never_sent = (
        withdrawal("SETTLED", 10_000),
        withdrawal("FAILED", 40_001),
        withdrawal("FAILED", 5),
    )
    intents = by_id(paid, declined, never_sent)
    payouts: dict[str, tuple[str, int] | None] = {
        paid.id: ("SUCCESS", 10_000),
        declined.id: ("FAILED", 40_001),
        never_sent.id: None,
    }
    assert inv.payouts_wrong(intents, payouts, 10_000) == {}
    assert list(inv.payouts_wrong(intents, {**payouts, paid.id: None}, 10_000)) == [paid.id]
    assert list(inv.payouts_wrong(intents, {**payouts, paid.id: ("SUCCESS", 9_999)}, 10_000)) == [paid.id]
    assert list(inv.payouts_wrong(intents, {**payouts, declined.id: ("SUCCESS", 40_001)}, 10_000)) == [
        declined.id
    ]
    assert list(inv.payouts_wrong(intents, payouts, 20_000)) == ["ipps"]  # paid twice, under another key


# -- nothing pending beyond the lease -----------------------------------------------------------------


def test_stuck_entries_are_those_pending_longer_than_the_lease() -> None:
    young = PendingEntry("{pm:intents:0}", "orchestrator", "1-0", "chaos-orchestrator-1", 900, 1)
    old = PendingEntry("{pm:ledger:commands:0}", "ledger-writer", "2-0", "chaos-ledger-writer-1", 4_001, 2)
    assert inv.stuck_entries([young], lease_ms=4_000) == {}
    assert list(inv.stuck_entries([young, old], lease_ms=4_000)) == [
        "{pm:ledger:commands:0}/ledger-writer 2-0"
    ]


# -- DLQs explained -----------------------------------------------------------------------------------


def letter(
    stream: str, intent_id: str | None, *, reason: str = "max_deliveries", error: str = "boom"
) -> DeadLetterFact:
    key = "{" + stream + ":0}"
    return DeadLetterFact(key + ":dlq", "5-0", stream, reason, error, intent_id)


def test_a_dead_psp_job_is_explained_by_its_fence_or_its_alert_and_only_once_terminal() -> None:
    failed = IntentFact(
        _id(),
        "PROMPTPAY_WITHDRAWAL",
        "FAILED",
        "PSP_UNREACHABLE",
        50_003,
        "THB",
        {"kind": "user", "id": "a"},
        {},
    )
    job = letter("pm:psp:ipps:jobs", failed.id)
    fenced = [PspFact(failed.id, "final", "FAILED", "JOB_DEAD_LETTERED")]
    assert inv.unexplained_dead_letters([job], by_id(failed), [], fenced, []) == {}
    alert = [AlertFact("psp_job_dead_lettered", failed.id, job.dlq, job.entry_id)]
    assert inv.unexplained_dead_letters([job], by_id(failed), alert, [], []) == {}
    # Final already when the review looked (the sweep concluded NOT_EXECUTED): its result republished.
    concluded = [PspFact(failed.id, "final", "FAILED", "NOT_EXECUTED")]
    assert inv.unexplained_dead_letters([job], by_id(failed), [], concluded, []) == {}
    still_confirming = [PspFact(failed.id, "confirm_sent", None, None)]
    assert list(inv.unexplained_dead_letters([job], by_id(failed), [], still_confirming, []))
    # Neither fence nor alert: a finding; and a job whose intent is still open is one too.
    assert list(inv.unexplained_dead_letters([job], by_id(failed), [], [], [])) == [f"{job.dlq} 5-0"]
    still_open = IntentFact(**{**failed.__dict__, "state": "AUTHORIZED", "failure_code": None})
    assert list(inv.unexplained_dead_letters([job], by_id(still_open), [], fenced, [])) == [f"{job.dlq} 5-0"]


def test_a_dead_psp_result_needs_its_alert() -> None:
    done = p2p()
    result = letter("pm:psp:results", done.id)
    alert = AlertFact("psp_result_dead_lettered", done.id, result.dlq, result.entry_id)
    assert inv.unexplained_dead_letters([result], by_id(done), [alert], [], []) == {}
    assert list(inv.unexplained_dead_letters([result], by_id(done), [], [], [])) == [f"{result.dlq} 5-0"]


def test_redelivery_to_killed_consumers_explains_only_a_killed_service_and_no_handler_error() -> None:
    done = p2p()
    died = letter("pm:ledger:commands", done.id, error=f"delivered 3 times {inv.KILLED_CONSUMER}")
    assert inv.unexplained_dead_letters([died], by_id(done), [], [], ["ledger-writer"]) == {}
    # The writer was never killed: who let it die three times?
    assert list(inv.unexplained_dead_letters([died], by_id(done), [], [], ["gateway"])) == [f"{died.dlq} 5-0"]
    # A handler that failed three times is a finding, killed or not.
    failing = letter("pm:ledger:commands", done.id, error="ValueError: bad command")
    assert list(inv.unexplained_dead_letters([failing], by_id(done), [], [], ["ledger-writer"]))
    poisoned = letter("pm:intents", done.id, reason="decode_error", error="not JSON")
    assert list(inv.unexplained_dead_letters([poisoned], by_id(done), [], [], ["orchestrator"]))


def test_intent_of_payload_reads_the_message_intent_id() -> None:
    assert inv.intent_of_payload(b'{"kind":"psp.job","intent_id":"abc"}') == "abc"
    assert inv.intent_of_payload(b"not json") is None
    assert inv.intent_of_payload(None) is None


# -- all of them, and the report ----------------------------------------------------------------------


def test_check_all_on_a_consistent_run_holds_and_a_report_names_the_offenders() -> None:
    intent = p2p()
    facts = Facts(intents=by_id(intent), transfers=legs_of(intent))
    # Balances as the legs leave them: alice pays principal and fees, bob receives, fee revenue earns.
    alice, bob = wallet_account("alice", "THB"), wallet_account("bob", "THB")
    facts.owned = {("user", "alice", "THB"): alice, ("user", "bob", "THB"): bob}
    facts.accounts = [
        AccountFact(alice, THB, 1, 0, 10_300, 0, 0),
        AccountFact(bob, THB, 1, 0, 0, 0, 10_000),
        AccountFact(_id(), THB, 90, 0, 0, 0, 0),
        AccountFact(_id(), THB, 10, 0, 0, 0, 300),
    ]
    results = inv.check_all(facts, lease_ms=4_000, killed=[])
    # The ledger agrees with the intent (alice is -10,300 by what settled), but she was never funded:
    # only "no wallet, merchant or liquidity account below zero" objects.
    assert {name: list(offenders) for name, offenders in results.items() if offenders} == {
        "no wallet, merchant or liquidity account below zero": [alice]
    }

    report = Report(seed=1, planned=1, invariants=results)
    assert not report.ok and report.offending_ids() == [alice]
    assert any(alice in line for line in report.problems())
    assert Report(seed=1, planned=1, invariants={"x": {}}).ok
