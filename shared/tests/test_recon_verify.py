"""What the per-intent check reports for each kind of difference, on transfers as the ledger returns
them (`tigerbeetle.Transfer`), built from the intent's own legs and then changed one field at a time.
(End to end, against the ledger-writer and the embedded ledger: tests/test_reconciliation.py.)"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import tigerbeetle as tb

from pm_shared.intents.record import IntentRow, Side, StoredFee
from pm_shared.messages import LedgerTransfer
from pm_shared.reconciliation import kinds, verify

NOW = 2_000_000_000 * 10**9
FEE = StoredFee(rule_id="f", rule_version=1, amount=20, currency="THB", timing="POST")


def intent(state: str = "SETTLED", fees: tuple[StoredFee, ...] = ()) -> IntentRow:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return IntentRow(
        id=str(uuid.uuid4()), type="P2P", state=state, step=None, channel=None, route=None, amount=1_000,
        currency="THB", source=Side("user", "a"), target=Side("user", "b"), from_name=None, to_name=None,
        comment=None, requires_monitoring=False, metadata={}, fees=fees, created_at=at, updated_at=at,
    )  # fmt: skip


def ledger_copy(t: LedgerTransfer, pending: LedgerTransfer | None = None, **changed: Any) -> tb.Transfer:
    """`t` as the ledger keeps it (a post or void takes its pending transfer's accounts)."""
    sides = pending or t
    made = tb.Transfer(
        id=t.id, debit_account_id=sides.debit_account_id, credit_account_id=sides.credit_account_id,
        amount=t.amount, pending_id=t.pending_id, user_data_128=t.user_data_128, timeout=t.timeout,
        ledger=t.ledger, code=t.code, flags=tb.TransferFlags(t.flags & ~int(tb.TransferFlags.LINKED)),
        timestamp=NOW - 10**9,
    )  # fmt: skip
    return dataclasses.replace(made, **changed) if changed else made


def settled_ledger(exp: verify.Expected) -> dict[int, tb.Transfer]:
    found = {p.hold.id: ledger_copy(p.hold) for p in exp.pending}
    found |= {p.post.id: ledger_copy(p.post, p.hold) for p in exp.pending}
    found |= {t.id: ledger_copy(t) for _, t in exp.direct}
    return found


def found_kinds(exp: verify.Expected, found: dict[int, tb.Transfer]) -> list[str]:
    return sorted(f.kind for f in verify.check(exp, found, NOW))


def test_a_settled_intent_as_the_saga_leaves_it_is_clean_even_from_its_posts_alone() -> None:
    exp = verify.expected(intent(fees=(FEE,)))
    found = settled_ledger(exp)
    assert found_kinds(exp, found) == []
    assert set(exp.ids()) <= set(found) and not {p.hold.id for p in exp.pending} & set(exp.ids())
    assert found_kinds(exp, {i: t for i, t in found.items() if i in exp.ids()}) == []


def test_each_changed_field_is_its_own_kind() -> None:
    exp = verify.expected(intent())
    [p] = exp.pending
    for change, kind in (
        ({"debit_account_id": 12345}, kinds.ACCOUNT_MISMATCH),
        ({"ledger": 840}, kinds.LEDGER_MISMATCH),
        ({"code": 99}, kinds.CODE_MISMATCH),
        ({"amount": 999}, kinds.AMOUNT_MISMATCH),
    ):
        found = settled_ledger(exp) | {p.post.id: ledger_copy(p.post, p.hold, **change)}
        assert found_kinds(exp, found) == [kind], change


def test_a_post_of_zero_is_posted_zero_with_the_shortfall_a_correction_makes_good() -> None:
    exp = verify.expected(intent())
    [p] = exp.pending
    found = settled_ledger(exp) | {p.post.id: ledger_copy(p.post, p.hold, amount=0)}
    [finding] = verify.check(exp, found, NOW)
    assert finding.kind == kinds.POSTED_ZERO
    [short] = finding.shortfalls
    assert (short.amount, short.debit, short.credit) == (
        1_000,
        p.hold.debit_account_id,
        p.hold.credit_account_id,
    )
    fix = tb.Transfer(
        id=verify.correction_id(exp.intent.id, p.leg.name), debit_account_id=short.debit,
        credit_account_id=short.credit, amount=1_000, ledger=short.ledger, code=verify.CORRECTION_CODE,
    )  # fmt: skip
    assert found_kinds(exp, found | {fix.id: fix}) == []


def test_missing_and_unresolved_transfers_of_a_settled_intent() -> None:
    exp = verify.expected(intent(fees=(FEE,)))
    [p] = exp.pending
    [(_, direct)] = exp.direct
    found = settled_ledger(exp)
    assert found_kinds(exp, {i: t for i, t in found.items() if i != direct.id}) == [kinds.MISSING_TRANSFER]
    open_hold = {i: t for i, t in found.items() if i != p.post.id}
    assert found_kinds(exp, open_hold) == [kinds.PENDING_NOT_RESOLVED]
    expired = open_hold | {p.hold.id: ledger_copy(p.hold, timeout=1)}
    assert found_kinds(exp, expired) == [kinds.MISSING_TRANSFER]


def test_a_failed_intent_has_nothing_posted_and_nothing_held() -> None:
    exp = verify.expected(intent("FAILED"))
    [p] = exp.pending
    assert found_kinds(exp, {}) == []  # never authorized
    held = {p.hold.id: ledger_copy(p.hold)}
    assert found_kinds(exp, held) == [kinds.PENDING_NOT_RESOLVED]
    void = tb.Transfer(id=p.void_id, pending_id=p.hold.id, ledger=764, code=1)
    assert found_kinds(exp, held | {p.void_id: void}) == []
    posted = held | {p.post.id: ledger_copy(p.post, p.hold)}
    assert found_kinds(exp, posted) == [kinds.POSTED_ON_FAILED]
