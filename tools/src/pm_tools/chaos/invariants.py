"""The invariants (docs/invariants.md), each a pure function over what the run read back (`facts`).

Each returns what breaks it: `{offending id: why}` (intent ids, ledger account ids, ledgers, stream
entries); empty means it holds. They take plain rows, so the unit tests feed them fabricated ones.

- `not_terminal`: every accepted intent reached SETTLED or FAILED (invariant 1).
- `unbalanced_ledgers`: per ledger, debits = credits, posted and pending (invariant 2).
- `wallets_below_zero`: no user wallet's debits (posted, or posted + pending) exceed its credits
  (invariant 2).
- `wallets_disagree`: each wallet's posted balance is what the SETTLED intents moved (invariant 2:
  nothing applied twice, nothing created).
- `settled_legs_wrong`: a SETTLED intent has exactly its legs — principal and every fee, posted, with
  the amounts on the intent — and nothing else (no void) (invariant 3).
- `failed_legs_wrong`: a FAILED intent has no posted leg and no pending one left open (invariant 3).
- `orphan_transfers`: every ledger transfer belongs to an intent (invariant 2).
- `payouts_wrong`: the IPPS sandbox paid every SETTLED withdrawal once, with its amount, and nothing
  for a FAILED one; what it paid in all is what the SETTLED withdrawals add up to (invariant 2).
- `stuck_entries`: nothing pending in any consumer group longer than the lease (invariant 4).
- `unexplained_dead_letters`: every DLQ record has a reason the run expects (see the function).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import tigerbeetle as tb

from pm_client.api import TERMINAL_STATES
from pm_shared.ledger import chart, ids
from pm_shared.streams import names

WALLET_CODE = int(chart.Code.USER_WALLET)
PENDING = int(tb.TransferFlags.PENDING)
POST = int(tb.TransferFlags.POST_PENDING_TRANSFER)
VOID = int(tb.TransferFlags.VOID_PENDING_TRANSFER)
# ledger.transfers.pending_status of a pending transfer.
STATUS_PENDING, STATUS_POSTED, STATUS_VOIDED, STATUS_EXPIRED = 1, 2, 3, 4

# Which service consumes each logical stream (for dead letters of a consumer that was SIGKILLed): a
# consumer group is named after the service that reads in it.
CONSUMER_OF: dict[str, str] = {spec.name: group for spec in names.ALL_STREAMS for group in spec.groups}


@dataclass(frozen=True)
class IntentFact:
    id: str
    type: str
    state: str
    failure_code: str | None
    amount: int
    currency: str
    source: Mapping[str, object]
    target: Mapping[str, object]
    fees: Sequence[Mapping[str, object]] = ()
    route: Sequence[str] | None = None
    step: str | None = None
    created_at: datetime | None = None
    terminal_at: datetime | None = None

    @property
    def holds(self) -> bool:
        """Authorizes before it settles (a top-up's route does not: its legs are made outright)."""
        return self.route is None or "authorize" in self.route


@dataclass(frozen=True)
class TransferFact:
    id: str
    """The transfer id as a UUID string (the embedded ledger's u128)."""
    intent_id: str
    """user_data_128 as a UUID string: the intent that made it."""
    amount: int
    flags: int
    ledger: int
    pending_id: str = "00000000-0000-0000-0000-000000000000"
    pending_status: int | None = None


@dataclass(frozen=True)
class AccountFact:
    id: str
    ledger: int
    code: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


@dataclass(frozen=True)
class PendingEntry:
    """One entry of a consumer group's pending list (XPENDING)."""

    key: str
    group: str
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True)
class DeadLetterFact:
    dlq: str
    entry_id: str
    stream: str
    """The logical stream it came from (`pm:psp:ipps:jobs`)."""
    reason: str
    error: str
    intent_id: str | None


@dataclass(frozen=True)
class AlertFact:
    kind: str
    intent_id: str | None
    stream: str | None
    entry_id: str | None


@dataclass(frozen=True)
class PspFact:
    intent_id: str
    phase: str
    status: str | None
    failure_code: str | None


@dataclass
class Facts:
    """Everything the invariants look at, read once the run is quiet."""

    intents: dict[str, IntentFact] = field(default_factory=dict)
    transfers: list[TransferFact] = field(default_factory=list)
    accounts: list[AccountFact] = field(default_factory=list)
    wallets: dict[tuple[str, str], str] = field(default_factory=dict)
    """(owner id, currency) → the wallet's ledger account id, for every wallet PM mapped."""
    pending: list[PendingEntry] = field(default_factory=list)
    dead_letters: list[DeadLetterFact] = field(default_factory=list)
    alerts: list[AlertFact] = field(default_factory=list)
    psp: list[PspFact] = field(default_factory=list)
    payouts: dict[str, tuple[str, int] | None] = field(default_factory=dict)
    """Withdrawal intent id → what the IPPS sandbox holds under its payout key: (status, amount) or None."""
    ipps_paid: int | None = None
    """What the IPPS sandbox paid out in all (None: not read)."""


def tid(intent_id: str, leg: str) -> str:
    """A leg's transfer id as the embedded ledger stores it (a UUID string)."""
    return str(uuid.UUID(int=ids.transfer_id(intent_id, leg)))


def wallet_account(owner_id: str, currency: str) -> str:
    ledger = chart.ledger_of(currency)
    return str(uuid.UUID(int=ids.account_id("user", owner_id, ledger, WALLET_CODE)))


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


def wallets_below_zero(accounts: Iterable[AccountFact]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in accounts:
        if a.code != WALLET_CODE:
            continue
        if a.debits_posted > a.credits_posted or a.debits_posted + a.debits_pending > a.credits_posted:
            out[a.id] = (
                f"wallet on ledger {a.ledger}: credits posted {a.credits_posted}, debits posted "
                f"{a.debits_posted} (+{a.debits_pending} pending)"
            )
    return out


def _user(party: Mapping[str, object]) -> str | None:
    return str(party.get("id")) if party.get("kind") == "user" and party.get("id") else None


def expected_wallets(intents: Iterable[IntentFact]) -> Counter[tuple[str, str]]:
    """What the SETTLED intents leave on each (owner, currency) wallet: in - out - the fees it paid."""
    out: Counter[tuple[str, str]] = Counter()
    for i in intents:
        if i.state != "SETTLED":
            continue
        source, target = _user(i.source), _user(i.target)
        if source:
            out[(source, i.currency)] -= i.amount
        if target:
            out[(target, i.currency)] += i.amount
        for fee in i.fees:
            payer = source if fee.get("payer", "source") == "source" else target
            if payer:
                out[(payer, i.currency)] -= int(str(fee["amount"]))
    return out


def wallets_disagree(
    intents: Mapping[str, IntentFact], accounts: Iterable[AccountFact], wallets: Mapping[tuple[str, str], str]
) -> dict[str, str]:
    by_id = {a.id: a for a in accounts}
    expected = expected_wallets(intents.values())
    out: dict[str, str] = {}
    for owner_currency in sorted(set(wallets) | set(expected)):
        account_id = wallets.get(owner_currency) or wallet_account(*owner_currency)
        account = by_id.get(account_id)
        posted = account.credits_posted - account.debits_posted if account is not None else 0
        if posted != expected[owner_currency]:
            owner, currency = owner_currency
            out[account_id] = (
                f"wallet of {owner} ({currency}): posted {posted}, settled intents add up to "
                f"{expected[owner_currency]}"
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


def expected_legs(intent: IntentFact) -> dict[str, tuple[str, int]]:
    """The transfers a SETTLED intent must have: transfer id → (kind, amount); kind is `pending`
    (held then posted), `post` (the post of a pending one) or `plain` (made outright)."""
    held = intent.holds
    legs: list[tuple[str, int, bool]] = [("principal", intent.amount, held)]
    for fee in intent.fees:
        rule_id = fee.get("ruleId", fee.get("rule_id"))
        legs.append((f"fee:{rule_id}", int(str(fee["amount"])), held and fee.get("timing") == "PRE"))
    out: dict[str, tuple[str, int]] = {}
    for name, amount, pending in legs:
        if pending:
            out[tid(intent.id, name)] = ("pending", amount)
            out[tid(intent.id, name + ":post")] = ("post", amount)
        else:
            out[tid(intent.id, name)] = ("plain", amount)
    return out


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
        problems: list[str] = []
        for transfer_id, (kind, amount) in want.items():
            t = have.get(transfer_id)
            if t is None:
                problems.append(f"{kind} leg {transfer_id} of {amount} missing")
            elif (_kind(t), t.amount) != (kind, amount):
                problems.append(f"leg {transfer_id}: {_kind(t)} {t.amount}, expected {kind} {amount}")
            elif kind == "pending" and t.pending_status != STATUS_POSTED:
                problems.append(f"pending leg {transfer_id} has status {t.pending_status}, not posted")
        for transfer_id, t in have.items():
            if transfer_id not in want:
                problems.append(f"unexpected {_kind(t)} transfer {transfer_id} of {t.amount}")
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
        "no wallet below zero": wallets_below_zero(facts.accounts),
        "wallets = what settled intents moved": wallets_disagree(
            facts.intents, facts.accounts, facts.wallets
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
