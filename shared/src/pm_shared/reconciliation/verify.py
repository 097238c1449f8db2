"""Checking one terminal intent against the ledger: what it should have made there, and what is there.

The expected transfers are recomputed with the saga's own code (`pm_shared.intents.legs`): the same
deterministic ids, amounts, accounts, ledgers and codes. `expected_ids` lists every id worth looking
up for an intent; `check` compares what `lookup_transfers` returned with what the intent's state
requires and returns one `Finding` per kind of difference (each naming its legs):

- SETTLED: each pending leg (principal, PRE fees) authorized, then posted with its exact amount; each
  direct leg (POST fees, a top-up's legs) made; nothing voided in place of a post.
- FAILED: nothing posted and no direct leg made; each authorization voided or expired (a FAILED
  intent's void is sent with the state change, so a young one may still be on its way: the caller
  waits before calling that a finding).

A settled leg that posted less than its authorization (the amount=0 case) is a `Shortfall`: what a
correcting transfer must add. Corrections (`correction_id`) count towards the leg, so a repaired
intent checks clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import tigerbeetle as tb

from pm_shared.intents import legs as legs_
from pm_shared.intents.record import IntentRow
from pm_shared.ledger import ids
from pm_shared.messages import LedgerTransfer
from pm_shared.reconciliation import kinds

SETTLED = "SETTLED"
FAILED = "FAILED"
_PENDING = int(tb.TransferFlags.PENDING)
_POST = int(tb.TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(tb.TransferFlags.VOID_PENDING_TRANSFER)
_KIND_FLAGS = _PENDING | _POST | _VOID
CORRECTION_CODE = 50
"""The transfer code of a correcting transfer the reconciler's repairs make (docs/ledger.md)."""


@dataclass(frozen=True)
class Shortfall:
    """A settled leg that moved less than it should: a correcting transfer of `amount` from `debit`
    to `credit` on `ledger` makes it whole. `at` is when the leg was posted (ledger ns)."""

    leg: str
    debit: int
    credit: int
    ledger: int
    amount: int
    at: int


@dataclass
class Finding:
    """One kind of difference for one subject, with every leg that shows it."""

    kind: str
    subject: str
    intent_id: str | None
    detail: dict[str, object] = field(default_factory=dict)
    shortfalls: list[Shortfall] = field(default_factory=list)


@dataclass(frozen=True)
class PendingLeg:
    leg: legs_.Leg
    hold: LedgerTransfer
    post: LedgerTransfer
    intent_id: str

    @property
    def void_id(self) -> int:
        """The void's id as `legs_.void` makes it (its other fields are never compared). Worked out
        only when asked: a settled intent's first look has no need of it."""
        return self.leg.transfer_id(self.intent_id, ":void")


@dataclass(frozen=True)
class Expected:
    """An intent's transfers: pending legs (with their post and void) and direct legs."""

    intent: IntentRow
    pending: list[PendingLeg]
    direct: list[tuple[legs_.Leg, LedgerTransfer]]

    def ids(self) -> list[int]:
        """What to look up first: for a SETTLED intent its posts and direct legs (what moved), for a
        FAILED one everything."""
        if self.intent.state == SETTLED:
            out = [p.post.id for p in self.pending]
        else:
            out = [i for p in self.pending for i in (p.hold.id, p.post.id, p.void_id)]
        out.extend(t.id for _, t in self.direct)
        return out

    def more_ids(self) -> list[int]:
        """What to look up when the first look found differences: corrections, and a SETTLED
        intent's authorizations and voids."""
        if self.intent.state != SETTLED:
            return self.correction_ids()
        return [i for p in self.pending for i in (p.hold.id, p.void_id)] + self.correction_ids()

    def all_ids(self) -> list[int]:
        """Every id the intent can have made: authorizations, posts, voids, direct legs, corrections."""
        out = [i for p in self.pending for i in (p.hold.id, p.post.id, p.void_id)]
        out.extend(t.id for _, t in self.direct)
        return out + self.correction_ids()

    def correction_ids(self) -> list[int]:
        return [correction_id(self.intent.id, leg.name) for leg in self._legs()]

    def _legs(self) -> Iterable[legs_.Leg]:
        yield from (p.leg for p in self.pending)
        yield from (leg for leg, _ in self.direct)


def correction_id(intent_id: str, leg: str) -> int:
    """The id of the correcting transfer that makes one leg of an intent whole."""
    return ids.transfer_id(intent_id, f"correction:{leg}")


def expected(intent: IntentRow) -> Expected:
    """The transfers `intent` makes on the ledger, as the saga would send them. Raises
    `legs_.LegError` when the intent names a party the ledger has no account for."""
    all_legs = legs_.legs(intent)
    holds = legs_.authorize(intent, all_legs, timeout_s=0)
    settled = legs_.settle(intent, all_legs)
    pending_legs = [leg for leg in all_legs if leg.pending]
    posts = settled[: len(pending_legs)]
    direct = settled[len(pending_legs) :]
    return Expected(
        intent,
        [PendingLeg(leg, h, p, intent.id) for leg, h, p in zip(pending_legs, holds, posts, strict=True)],
        list(zip([leg for leg in all_legs if not leg.pending], direct, strict=True)),
    )


class _Collector:
    def __init__(self, intent_id: str) -> None:
        self.intent_id = intent_id
        self.by_kind: dict[str, Finding] = {}

    def add(self, kind: str, leg: str, **detail: object) -> Finding:
        finding = self.by_kind.get(kind)
        if finding is None:
            finding = self.by_kind[kind] = Finding(kind, self.intent_id, self.intent_id, {"legs": []})
        legs_seen = finding.detail["legs"]
        assert isinstance(legs_seen, list)
        legs_seen.append({"leg": leg, **detail})
        return finding


def _compare(
    out: _Collector,
    leg: str,
    want: LedgerTransfer,
    got: tb.Transfer,
    what: str,
    accounts: LedgerTransfer | None = None,
) -> None:
    """Every field the ledger keeps as sent (amounts of posts are judged by the caller); `accounts`:
    the transfer whose accounts `got` must have (a post has its pending transfer's)."""
    sides = accounts or want
    if what != "post" and got.amount != want.amount:
        out.add(kinds.AMOUNT_MISMATCH, leg, transfer=what, expected=want.amount, found=got.amount)
    if got.debit_account_id != sides.debit_account_id or got.credit_account_id != sides.credit_account_id:
        out.add(
            kinds.ACCOUNT_MISMATCH,
            leg,
            transfer=what,
            expected=[str(sides.debit_account_id), str(sides.credit_account_id)],
            found=[str(got.debit_account_id), str(got.credit_account_id)],
        )
    if got.ledger != want.ledger:
        out.add(kinds.LEDGER_MISMATCH, leg, transfer=what, expected=want.ledger, found=got.ledger)
    if (
        got.code != want.code
        or got.user_data_128 != want.user_data_128
        or got.pending_id != want.pending_id
        or int(got.flags) & _KIND_FLAGS != want.flags & _KIND_FLAGS
    ):
        out.add(
            kinds.CODE_MISMATCH,
            leg,
            transfer=what,
            expected={"code": want.code, "flags": want.flags & _KIND_FLAGS},
            found={"code": got.code, "flags": int(got.flags) & _KIND_FLAGS},
        )


def _expired(hold: tb.Transfer, now_ns: int) -> bool:
    return hold.timeout > 0 and hold.timestamp + hold.timeout * 1_000_000_000 <= now_ns


def _corrected(exp: Expected, leg: legs_.Leg, found: Mapping[int, tb.Transfer]) -> int:
    """What corrections added to `leg` (negative when they took back an excess)."""
    fix = found.get(correction_id(exp.intent.id, leg.name))
    if fix is None:
        return 0
    return fix.amount if fix.debit_account_id == leg.debit.id else -fix.amount


def _settled_hold(
    out: _Collector, exp: Expected, p: PendingLeg, found: Mapping[int, tb.Transfer], now_ns: int
) -> None:
    """A settled pending leg. Its post alone shows what moved (the ledger copies the accounts, ledger
    and code of the pending transfer into the post), so the authorization is looked at only when the
    post is missing or differs (`Expected.more_ids`)."""
    name = p.leg.name
    hold = found.get(p.hold.id)
    post = found.get(p.post.id)
    if post is None:
        if hold is None:
            out.add(kinds.MISSING_TRANSFER, name, transfer="pending", id=str(p.hold.id))
        elif p.void_id in found or _expired(hold, now_ns):
            why = "voided" if p.void_id in found else "expired"
            out.add(kinds.MISSING_TRANSFER, name, transfer="post", id=str(p.post.id), pending=why)
        else:
            out.add(kinds.PENDING_NOT_RESOLVED, name, id=str(p.hold.id), amount=hold.amount)
        if hold is not None:
            _compare(out, name, p.hold, hold, "pending")
        return
    _compare(out, name, p.post, post, "post", p.hold)
    if hold is not None:
        _compare(out, name, p.hold, hold, "pending")
    # Corrections count only where the post alone falls short (naming one is a hash; a first look
    # has none anyway: they are read with `more_ids`).
    moved = post.amount if post.amount == p.leg.amount else post.amount + _corrected(exp, p.leg, found)
    if moved == p.leg.amount:
        return
    kind = kinds.POSTED_ZERO if post.amount == 0 else kinds.AMOUNT_MISMATCH
    finding = out.add(kind, name, transfer="post", expected=p.leg.amount, found=moved, id=str(post.id))
    # Only a shortfall against an authorization of the right amount is the ledger's own evidence of
    # what should have moved; anything else needs an operator's judgement.
    if hold is not None and moved < p.leg.amount and hold.amount == p.leg.amount:
        finding.shortfalls.append(
            Shortfall(
                name,
                hold.debit_account_id,
                hold.credit_account_id,
                hold.ledger,
                p.leg.amount - moved,
                post.timestamp,
            )
        )


def _settled(out: _Collector, exp: Expected, found: Mapping[int, tb.Transfer], now_ns: int) -> None:
    for p in exp.pending:
        _settled_hold(out, exp, p, found, now_ns)
    for leg, want in exp.direct:
        got = found.get(want.id)
        if got is None:
            if _corrected(exp, leg, found) != leg.amount:
                out.add(kinds.MISSING_TRANSFER, leg.name, transfer="direct", id=str(want.id))
            continue
        _compare(out, leg.name, want, got, "direct")


def _failed(out: _Collector, exp: Expected, found: Mapping[int, tb.Transfer], now_ns: int) -> None:
    for p in exp.pending:
        hold = found.get(p.hold.id)
        if hold is None:
            continue  # never authorized (it failed before): nothing to undo
        if p.post.id in found:
            out.add(kinds.POSTED_ON_FAILED, p.leg.name, transfer="post", amount=found[p.post.id].amount)
        elif p.void_id not in found and not _expired(hold, now_ns):
            out.add(kinds.PENDING_NOT_RESOLVED, p.leg.name, id=str(p.hold.id), amount=hold.amount)
    for leg, want in exp.direct:
        if want.id in found:
            out.add(kinds.POSTED_ON_FAILED, leg.name, transfer="direct", amount=found[want.id].amount)


def check(exp: Expected, found: Mapping[int, tb.Transfer], now_ns: int) -> list[Finding]:
    """The findings for one terminal intent, given every transfer the ledger has among `exp.ids()`
    (then, to be sure of any difference, among `exp.more_ids()` too). A non-terminal intent has none."""
    out = _Collector(exp.intent.id)
    if exp.intent.state == SETTLED:
        _settled(out, exp, found, now_ns)
    elif exp.intent.state == FAILED:
        _failed(out, exp, found, now_ns)
    return list(out.by_kind.values())
