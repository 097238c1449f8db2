"""The invariants (docs/invariants.md), each a pure function over what the run read back (the rows
of `pm_tools.chaos.rows`).

Each returns what breaks it: `{offending id: why}` (intent ids, ledger account ids, ledgers, stream
entries); empty means it holds. They take plain rows, so the unit tests feed them fabricated ones.

- `not_terminal`: every accepted intent reached SETTLED or FAILED (invariant 1).
- `unbalanced_ledgers`: per ledger, debits = credits, posted and pending (invariant 2).
- `accounts_below_zero`: no user wallet's, merchant account's or FX liquidity account's debits
  (posted, or posted + pending) exceed its credits (invariant 2).
- `balances_disagree`: each wallet's (per currency), merchant account's and liquidity account's posted
  balance is what the SETTLED intents moved, fees and exchanges included (invariant 2: nothing
  applied twice, nothing created).
- `settled_legs_wrong`: a SETTLED intent has exactly its legs — principal and every fee, posted, with
  the amounts on the intent, between the accounts of its parties (the fee's payer to the fee
  account), on its currency's ledger, with its type's transfer code — and nothing else (no void). An
  exchange's are `principal` (the user's wallet → liquidity, sold currency), `spread` (→ fee revenue,
  absent when 0) and `buy` (liquidity → the user's wallet, bought currency), all naming the intent,
  whose id is its quote's (invariant 3).
- `failed_legs_wrong`: a FAILED intent has no posted leg and no pending one left open, on any ledger
  (an exchange's two included) (invariant 3).
- `orphan_transfers`: every ledger transfer belongs to an intent (invariant 2).
- `payouts_wrong`: the IPPS sandbox paid every SETTLED withdrawal once, with its amount, and nothing
  for a FAILED one; what it paid in all is what the SETTLED withdrawals add up to (invariant 2).
- `stuck_entries`: nothing pending in any consumer group longer than the lease (invariant 4).
- `unexplained_dead_letters`: every DLQ record has a reason the run expects (see the function).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import tigerbeetle as tb

from pm_client.api import TERMINAL_STATES
from pm_shared.ledger import chart
from pm_shared.streams import names
from pm_tools.chaos.rows import (
    BOUNDED,
    LIQUIDITY,
    LIQUIDITY_CODE,
    AccountFact,
    AlertFact,
    DeadLetterFact,
    Facts,
    IntentFact,
    Owner,
    PendingEntry,
    PspFact,
    TransferFact,
    operator_account,
    owned_account,
    party_account,
    tid,
)

# Each intent type's principal transfer code, and a fee's, as docs/ledger.md lists them: written out
# here rather than imported from the orchestrator, so the check does not share the code it checks.
TRANSFER_CODES: dict[str, int] = {
    "P2P": 1,
    "ADJUSTMENT": 2,
    "PROMPTPAY_WITHDRAWAL": 3,
    "SBP_TOPUP": 4,
    "MINIAPP_CHARGE": 5,
    "MINIAPP_CREDIT": 6,
    "FX_EXCHANGE": 7,
    "REFUND": 8,
}
FEE_TRANSFER_CODE = 10
PENDING = int(tb.TransferFlags.PENDING)
POST = int(tb.TransferFlags.POST_PENDING_TRANSFER)
VOID = int(tb.TransferFlags.VOID_PENDING_TRANSFER)
# ledger.transfers.pending_status of a pending transfer.
STATUS_PENDING, STATUS_POSTED, STATUS_VOIDED, STATUS_EXPIRED = 1, 2, 3, 4

# Which service consumes each logical stream (for dead letters of a consumer that was SIGKILLed): a
# consumer group is named after the service that reads in it.
CONSUMER_OF: dict[str, str] = {spec.name: group for spec in names.ALL_STREAMS for group in spec.groups}


# -- 1. an accepted intent is never lost --------------------------------------------------------------


def not_terminal(intents: Mapping[str, IntentFact]) -> dict[str, str]:
    return {
        i.id: f"still {i.state} (step {i.step})" for i in intents.values() if i.state not in TERMINAL_STATES
    }


# -- 2. no money is created or destroyed --------------------------------------------------------------


def unbalanced_ledgers(accounts: Iterable[AccountFact]) -> dict[str, str]:
    sums: dict[int, Counter[str]] = {}
    for a in accounts:
        c = sums.setdefault(a.ledger, Counter())
        c["dp"] += a.debits_pending
        c["dP"] += a.debits_posted
        c["cp"] += a.credits_pending
        c["cP"] += a.credits_posted
    out: dict[str, str] = {}
    for ledger, c in sorted(sums.items()):
        if c["dP"] != c["cP"] or c["dp"] != c["cp"]:
            out[f"ledger {ledger}"] = (
                f"debits posted {c['dP']} vs credits posted {c['cP']}; "
                f"debits pending {c['dp']} vs credits pending {c['cp']}"
            )
    return out


_WHAT = {"user": "wallet", "merchant": "merchant account", LIQUIDITY: "liquidity account"}


def accounts_below_zero(accounts: Iterable[AccountFact]) -> dict[str, str]:
    """User wallets, merchant accounts and FX liquidity accounts whose debits (posted, or posted +
    pending) exceed their credits."""
    bounded = {code: kind for kind, code in BOUNDED.items()} | {LIQUIDITY_CODE: LIQUIDITY}
    out: dict[str, str] = {}
    for a in accounts:
        if a.code not in bounded:
            continue
        if a.debits_posted > a.credits_posted or a.debits_posted + a.debits_pending > a.credits_posted:
            what = _WHAT[bounded[a.code]]
            out[a.id] = (
                f"{what} on ledger {a.ledger}: credits posted {a.credits_posted}, debits posted "
                f"{a.debits_posted} (+{a.debits_pending} pending)"
            )
    return out


def _owner(party: Mapping[str, object], currency: str) -> Owner | None:
    """(kind, id, currency) of a user, merchant or liquidity party: the owners whose balances are
    checked."""
    kind, owner_id = party.get("kind"), party.get("id")
    if kind == LIQUIDITY:
        return (LIQUIDITY, "", currency)
    return (str(kind), str(owner_id), currency) if kind in BOUNDED and owner_id else None


def _exchanged(i: IntentFact, out: Counter[Owner]) -> None:
    """An exchange's moves: its amount out of the user's wallet in the sold currency, the principal into
    that currency's liquidity, the bought amount out of the other's liquidity into the user's wallet
    in it (the spread goes to fee revenue)."""
    fx = i.exchange
    assert fx is not None
    bought = str(fx["buyCurrency"])
    buy_amount = int(str(fx["buyAmount"]))
    source, target = _owner(i.source, i.currency), _owner(i.target, bought)
    if source:
        out[source] -= i.amount
    if target:
        out[target] += buy_amount
    out[(LIQUIDITY, "", i.currency)] += int(str(fx["principal"]))
    out[(LIQUIDITY, "", bought)] -= buy_amount


def expected_balances(intents: Iterable[IntentFact]) -> Counter[Owner]:
    """What the SETTLED intents leave on each wallet, merchant and liquidity account: in - out - the
    fees it paid (a fee's `payer` is the intent's `source`, or its `target`: a merchant's commission;
    a fee is in the intent's currency, an exchange's sold one)."""
    out: Counter[Owner] = Counter()
    for i in intents:
        if i.state != "SETTLED":
            continue
        source, target = _owner(i.source, i.currency), _owner(i.target, i.currency)
        if i.exchange is not None:
            _exchanged(i, out)
        else:
            if source:
                out[source] -= i.amount
            if target:
                out[target] += i.amount
        for fee in i.fees:
            payer = source if fee.get("payer", "source") == "source" else target
            if payer:
                out[payer] -= int(str(fee["amount"]))
    return out


def balances_disagree(
    intents: Mapping[str, IntentFact], accounts: Iterable[AccountFact], owned: Mapping[Owner, str]
) -> dict[str, str]:
    """Wallets, merchant and liquidity accounts whose posted balance is not what the SETTLED intents
    moved (the run's database is its own: nothing else moved them)."""
    by_id = {a.id: a for a in accounts}
    expected = expected_balances(intents.values())
    out: dict[str, str] = {}
    for owner in sorted(set(owned) | set(expected)):
        account_id = owned.get(owner) or owned_account(owner)
        account = by_id.get(account_id)
        posted = account.credits_posted - account.debits_posted if account is not None else 0
        if posted != expected[owner]:
            kind, owner_id, currency = owner
            what = _WHAT[kind] + (f" of {owner_id}" if owner_id else "")
            out[account_id] = (
                f"{what} ({currency}): posted {posted}, settled intents add up to {expected[owner]}"
            )
    return out


def orphan_transfers(intents: Mapping[str, IntentFact], transfers: Iterable[TransferFact]) -> dict[str, str]:
    return {
        t.id: f"transfer of {t.amount} on ledger {t.ledger} names no intent ({t.intent_id})"
        for t in transfers
        if t.intent_id not in intents
    }


# -- 3. every intent's legs match its state -----------------------------------------------------------


def _by_intent(transfers: Iterable[TransferFact]) -> dict[str, list[TransferFact]]:
    out: dict[str, list[TransferFact]] = {}
    for t in transfers:
        out.setdefault(t.intent_id, []).append(t)
    return out


class ExpectedLeg(NamedTuple):
    """One transfer a SETTLED intent must have."""

    kind: str
    """`pending` (held then posted), `post` (the post of a pending one) or `plain` (made outright)."""
    amount: int
    debit: str | None
    credit: str | None
    """The accounts it moves money between (None: PM has no account for that party)."""
    code: int
    ledger: int


def _fee_legs(intent: IntentFact, source: str | None, target: str | None) -> list[tuple[str, ExpectedLeg]]:
    """Each fee: from its payer (the source, or the target: a merchant's commission) to its fee account."""
    out: list[tuple[str, ExpectedLeg]] = []
    for fee in intent.fees:
        rule_id = fee.get("ruleId", fee.get("rule_id"))
        payer = source if fee.get("payer", "source") == "source" else target
        fee_code = chart.Code(int(str(fee.get("feeAccountCode", int(chart.Code.FEE_REVENUE)))))
        held = intent.holds and fee.get("timing") == "PRE"
        leg = ExpectedLeg(
            "pending" if held else "plain",
            int(str(fee["amount"])),
            payer,
            operator_account(fee_code, intent.currency),
            FEE_TRANSFER_CODE,
            chart.ledger_of(intent.currency),
        )
        out.append((f"fee:{rule_id}", leg))
    return out


def _exchange_legs(intent: IntentFact, source: str | None) -> list[tuple[str, ExpectedLeg]]:
    """An exchange's principal, spread (when not 0) and bought amount, as docs/fx.md lays them out."""
    fx = intent.exchange
    assert fx is not None
    sold, bought = intent.currency, str(fx["buyCurrency"])
    code = TRANSFER_CODES["FX_EXCHANGE"]

    def leg(amount: object, debit: str | None, credit: str | None, code: int, currency: str) -> ExpectedLeg:
        kind = "pending" if intent.holds else "plain"
        return ExpectedLeg(kind, int(str(amount)), debit, credit, code, chart.ledger_of(currency))

    liquidity = {c: operator_account(chart.Code.FX_LIQUIDITY, c) for c in (sold, bought)}
    legs = [("principal", leg(fx["principal"], source, liquidity[sold], code, sold))]
    if int(str(fx["spread"])):
        revenue = operator_account(chart.Code.FEE_REVENUE, sold)
        legs.append(("spread", leg(fx["spread"], source, revenue, FEE_TRANSFER_CODE, sold)))
    target = party_account(intent.target, bought)
    legs.append(("buy", leg(fx["buyAmount"], liquidity[bought], target, code, bought)))
    return legs


def expected_legs(intent: IntentFact) -> dict[str, ExpectedLeg]:
    """The transfers a SETTLED intent must have, by transfer id: the principal from the source's
    account to the target's with its type's code (an exchange: its three legs), then each fee; a held
    leg also has its post."""
    source = party_account(intent.source, intent.currency)
    target = party_account(intent.target, intent.currency)
    principal = ExpectedLeg(
        "pending" if intent.holds else "plain",
        intent.amount,
        source,
        target,
        TRANSFER_CODES.get(intent.type, -1),
        chart.ledger_of(intent.currency),
    )
    mine = [("principal", principal)] if intent.exchange is None else _exchange_legs(intent, source)
    out: dict[str, ExpectedLeg] = {}
    for name, leg in [*mine, *_fee_legs(intent, source, target)]:
        out[tid(intent.id, name)] = leg
        if leg.kind == "pending":
            out[tid(intent.id, name + ":post")] = leg._replace(kind="post")
    return out


def _leg_wrong(transfer_id: str, want: ExpectedLeg, t: TransferFact | None) -> str | None:
    """What is wrong with one leg of a SETTLED intent, or None."""
    if t is None:
        return f"{want.kind} leg {transfer_id} of {want.amount} missing"
    if (_kind(t), t.amount) != (want.kind, want.amount):
        return f"leg {transfer_id}: {_kind(t)} {t.amount}, expected {want.kind} {want.amount}"
    if (t.debit_account_id, t.credit_account_id) != (want.debit, want.credit):
        return (
            f"leg {transfer_id}: from {t.debit_account_id} to {t.credit_account_id}, expected from "
            f"{want.debit} to {want.credit}"
        )
    if t.code != want.code:
        return f"leg {transfer_id}: code {t.code}, expected {want.code}"
    if t.ledger != want.ledger:
        return f"leg {transfer_id}: on ledger {t.ledger}, expected {want.ledger}"
    if want.kind == "pending" and t.pending_status != STATUS_POSTED:
        return f"pending leg {transfer_id} has status {t.pending_status}, not posted"
    return None


def _kind(t: TransferFact) -> str:
    if t.flags & PENDING:
        return "pending"
    if t.flags & POST:
        return "post"
    if t.flags & VOID:
        return "void"
    return "plain"


def settled_legs_wrong(
    intents: Mapping[str, IntentFact], transfers: Iterable[TransferFact]
) -> dict[str, str]:
    found = _by_intent(transfers)
    out: dict[str, str] = {}
    for intent in intents.values():
        if intent.state != "SETTLED":
            continue
        want = expected_legs(intent)
        have = {t.id: t for t in found.get(intent.id, [])}
        problems = [
            wrong
            for transfer_id, leg in want.items()
            if (wrong := _leg_wrong(transfer_id, leg, have.get(transfer_id))) is not None
        ]
        for transfer_id, t in have.items():
            if transfer_id not in want:
                problems.append(f"unexpected {_kind(t)} transfer {transfer_id} of {t.amount}")
        quote = intent.exchange.get("quoteId") if intent.exchange is not None else intent.id
        if quote != intent.id:
            problems.append(f"carries out quote {quote}, but an exchange's id is its quote's")
        if problems:
            out[intent.id] = f"SETTLED {intent.type}: " + "; ".join(problems)
    return out


def failed_legs_wrong(intents: Mapping[str, IntentFact], transfers: Iterable[TransferFact]) -> dict[str, str]:
    found = _by_intent(transfers)
    out: dict[str, str] = {}
    for intent in intents.values():
        if intent.state != "FAILED":
            continue
        problems: list[str] = []
        for t in found.get(intent.id, []):
            kind = _kind(t)
            if kind in ("post", "plain"):
                problems.append(f"{kind} transfer {t.id} of {t.amount} posted")
            elif kind == "pending" and t.pending_status in (STATUS_PENDING, STATUS_POSTED):
                state = "still pending" if t.pending_status == STATUS_PENDING else "posted"
                problems.append(f"pending transfer {t.id} of {t.amount} {state}")
        if problems:
            out[intent.id] = f"FAILED {intent.failure_code}: " + "; ".join(problems)
    return out


def payouts_wrong(
    intents: Mapping[str, IntentFact], payouts: Mapping[str, tuple[str, int] | None], paid: int | None
) -> dict[str, str]:
    out: dict[str, str] = {}
    settled = 0
    for intent in intents.values():
        if intent.type != "PROMPTPAY_WITHDRAWAL" or intent.state not in TERMINAL_STATES:
            continue
        found = payouts.get(intent.id)
        if intent.state == "SETTLED":
            settled += intent.amount
            if found != ("SUCCESS", intent.amount):
                out[intent.id] = (
                    f"SETTLED, but IPPS holds {found} under its key, not a SUCCESS of {intent.amount}"
                )
        elif found is not None and found[0] == "SUCCESS":
            out[intent.id] = f"FAILED {intent.failure_code}, but IPPS paid {found[1]} under its key"
    if paid is not None and paid != settled:
        out["ipps"] = f"IPPS paid {paid} in all; the SETTLED withdrawals add up to {settled}"
    return out


# -- 4. nothing stays pending forever -----------------------------------------------------------------


def stuck_entries(pending: Iterable[PendingEntry], lease_ms: int) -> dict[str, str]:
    return {
        f"{p.key}/{p.group} {p.entry_id}": (
            f"pending on {p.consumer} for {p.idle_ms} ms (lease {lease_ms} ms), "
            f"delivered {p.deliveries} times"
        )
        for p in pending
        if p.idle_ms > lease_ms
    }


# -- DLQs explained -----------------------------------------------------------------------------------

KILLED_CONSUMER = "without an ack (the consumer died or stalled)"


def explain_dead_letter(
    letter: DeadLetterFact,
    intents: Mapping[str, IntentFact],
    alerts: Sequence[AlertFact],
    psp: Sequence[PspFact],
    killed: Iterable[str],
) -> str | None:
    """Why the run expects this DLQ record, or None (a finding). Expected:

    - a PSP job whose intent is terminal and that the orchestrator's DLQ review dealt with: fenced
      (its `pm.psp_tx_map` row FAILED `JOB_DEAD_LETTERED`, the intent failed and its hold voided),
      found final already (e.g. the IPPS adapter's sweep concluded NOT_EXECUTED while IPPS kept
      failing: the result republished), or a `psp_job_dead_lettered` alert while the adapter's
      status reads decided;
    - a PSP result with its `psp_result_dead_lettered` alert, whose intent still ended terminal;
    - an entry dead-lettered after being delivered to consumers that were SIGKILLed before they
      acked it (`max_deliveries`, no handler error recorded), of a service the run killed, whose
      intent (if it names one) ended terminal by the saga's resume.
    """
    intent = intents.get(letter.intent_id or "")
    terminal = intent is not None and intent.state in TERMINAL_STATES
    named = letter.intent_id is not None
    if letter.stream in ("pm:psp:ipps:jobs", "pm:psp:qp:jobs") and terminal:
        if any(p.intent_id == letter.intent_id and p.failure_code == "JOB_DEAD_LETTERED" for p in psp):
            return "PSP job dead-lettered before it reached the PSP: fenced, intent failed"
        final = [p for p in psp if p.intent_id == letter.intent_id and p.phase == "final"]
        if final:
            outcome = " ".join(filter(None, (final[0].status, final[0].failure_code)))
            return f"PSP job dead-lettered after its attempt was final ({outcome}): its result republished"
        if any(
            a.kind == "psp_job_dead_lettered" and (a.stream, a.entry_id) == (letter.dlq, letter.entry_id)
            for a in alerts
        ):
            return (
                "PSP job dead-lettered after a confirm that may have reached the PSP: alert raised, "
                "the adapter's status reads decided"
            )
    if (
        letter.stream == "pm:psp:results"
        and terminal
        and any(
            a.kind == "psp_result_dead_lettered" and (a.stream, a.entry_id) == (letter.dlq, letter.entry_id)
            for a in alerts
        )
    ):
        return "PSP result dead-lettered: alert raised, intent terminal"
    service = CONSUMER_OF.get(letter.stream)
    if (
        letter.reason == "max_deliveries"
        and KILLED_CONSUMER in letter.error
        and service in set(killed)
        and (terminal or not named)
    ):
        return f"delivered to {service} processes that were SIGKILLed before they acked it"
    return None


def _state(intents: Mapping[str, IntentFact], intent_id: str | None) -> str:
    intent = intents.get(intent_id or "")
    return intent.state if intent is not None else "unknown"


def unexplained_dead_letters(
    letters: Iterable[DeadLetterFact],
    intents: Mapping[str, IntentFact],
    alerts: Sequence[AlertFact],
    psp: Sequence[PspFact],
    killed: Iterable[str],
) -> dict[str, str]:
    killed = list(killed)
    out: dict[str, str] = {}
    for letter in letters:
        if explain_dead_letter(letter, intents, alerts, psp, killed) is None:
            out[f"{letter.dlq} {letter.entry_id}"] = (
                f"{letter.reason}: {letter.error[:300]} (intent {letter.intent_id or 'unknown'}, "
                f"state {_state(intents, letter.intent_id)})"
            )
    return out


def intent_of_payload(payload: bytes | None) -> str | None:
    """The `intent_id` a stream message names, if it decodes."""
    if not payload:
        return None
    try:
        decoded = json.loads(payload)
    except ValueError:
        return None
    value = decoded.get("intent_id") if isinstance(decoded, dict) else None
    return str(value) if value else None


# -- all of them --------------------------------------------------------------------------------------


def check_all(facts: Facts, *, lease_ms: int, killed: Iterable[str]) -> dict[str, dict[str, str]]:
    """Every invariant by name → its offenders (empty when it holds)."""
    killed = list(killed)
    return {
        "every accepted intent terminal": not_terminal(facts.intents),
        "per ledger debits = credits": unbalanced_ledgers(facts.accounts),
        "no wallet, merchant or liquidity account below zero": accounts_below_zero(facts.accounts),
        "wallets, merchant and liquidity accounts = what settled intents moved": balances_disagree(
            facts.intents, facts.accounts, facts.owned
        ),
        "SETTLED has exactly its posted legs": settled_legs_wrong(facts.intents, facts.transfers),
        "FAILED has none posted, none pending": failed_legs_wrong(facts.intents, facts.transfers),
        "every transfer belongs to an intent": orphan_transfers(facts.intents, facts.transfers),
        "IPPS paid exactly the SETTLED withdrawals": payouts_wrong(
            facts.intents, facts.payouts, facts.ipps_paid
        ),
        "nothing pending beyond the lease": stuck_entries(facts.pending, lease_ms),
        "every DLQ record explained": unexplained_dead_letters(
            facts.dead_letters, facts.intents, facts.alerts, facts.psp, killed
        ),
    }
