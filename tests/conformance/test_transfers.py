"""`create_transfers` for single-phase and pending transfers: ordered checks, effects, limits, overflow,
balancing and amounts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

S = tb.CreateTransferStatus
TF = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX
Balance = tuple[int, int, int, int]


def statuses(results: list[tb.CreateTransferResult]) -> list[tb.CreateTransferStatus]:
    return [r.status for r in results]


def both(account_id: int, flags: int = 0) -> tb.AccountFilter:
    return tb.AccountFilter(
        account_id=account_id,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=100,
        flags=tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS | flags,
    )


def test_validation_precedence_and_burned_ids(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
) -> None:
    """Each event fixes the previous one's first failure."""
    a, b = make_accounts(2)
    (c,) = make_accounts(1, ledger=2)
    missing = new_id()
    t1, t2 = new_id(), new_id()
    ok = new_id()

    def t(**fields: int) -> tb.Transfer:
        base: dict[str, int] = {"id": new_id(), "debit_account_id": a, "credit_account_id": b, "amount": 1}
        base.update(fields)
        return xfer(**base)

    batch = [
        t(id=0, debit_account_id=0, credit_account_id=0, ledger=0, code=0, flags=1 << 9, timestamp=1),
        t(id=0, debit_account_id=0, credit_account_id=0, ledger=0, code=0, flags=1 << 9),
        t(id=0, debit_account_id=0, credit_account_id=0, ledger=0, code=0),
        t(id=MAX, debit_account_id=0, credit_account_id=0, ledger=0, code=0),
        t(debit_account_id=0, credit_account_id=0, ledger=0, code=0),
        t(debit_account_id=MAX, credit_account_id=0, ledger=0, code=0),
        t(credit_account_id=0, ledger=0, code=0, pending_id=1),
        t(credit_account_id=MAX, ledger=0, code=0, pending_id=1),
        t(credit_account_id=a, ledger=0, code=0, pending_id=1),
        t(ledger=0, code=0, pending_id=1, timeout=1),
        t(ledger=0, code=0, timeout=1, flags=TF.CLOSING_DEBIT),
        t(ledger=0, code=0, flags=TF.CLOSING_CREDIT),
        t(ledger=0, code=0),
        t(code=0),
        t(id=t1, debit_account_id=missing, ledger=7),
        t(id=t2, credit_account_id=missing, ledger=7),
        t(credit_account_id=c),
        t(ledger=2),
        t(id=ok),
    ]
    results = ledger.create_transfers(batch)
    assert statuses(results) == [
        S.TIMESTAMP_MUST_BE_ZERO,
        S.RESERVED_FLAG,
        S.ID_MUST_NOT_BE_ZERO,
        S.ID_MUST_NOT_BE_INT_MAX,
        S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
        S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
        S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        S.ACCOUNTS_MUST_BE_DIFFERENT,
        S.PENDING_ID_MUST_BE_ZERO,
        S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        S.CLOSING_TRANSFER_MUST_BE_PENDING,
        S.LEDGER_MUST_NOT_BE_ZERO,
        S.CODE_MUST_NOT_BE_ZERO,
        S.DEBIT_ACCOUNT_NOT_FOUND,
        S.CREDIT_ACCOUNT_NOT_FOUND,
        S.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
        S.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
        S.CREATED,
    ]
    assert [y.timestamp - x.timestamp for x, y in zip(results, results[1:], strict=False)] == [1] * 18
    retry = ledger.create_transfers([t(id=t1), t(id=t2)])
    assert statuses(retry) == [S.ID_ALREADY_FAILED, S.ID_ALREADY_FAILED]
    assert ledger.lookup_transfers([t1, t2]) == []
    assert [x.id for x in ledger.lookup_transfers([ok])] == [ok]


def test_single_phase_effects_and_stored_fields(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """`dr.dpo += a`, `cr.cpo += a`; the transfer is stored as given, with the cluster timestamp."""
    a, b = make_accounts(2)
    t = xfer(a, b, 25, user_data_128=3, user_data_64=4, user_data_32=5, code=9)
    result = ledger.create_transfers([t])[0]
    assert result.status == S.CREATED
    assert balance(a) == (0, 25, 0, 0)
    assert balance(b) == (0, 0, 0, 25)
    stored = ledger.lookup_transfers([t.id])[0]
    assert stored == tb.Transfer(
        id=t.id,
        debit_account_id=a,
        credit_account_id=b,
        amount=25,
        user_data_128=3,
        user_data_64=4,
        user_data_32=5,
        ledger=1,
        code=9,
        flags=TF.NONE,
        timestamp=result.timestamp,
    )
    # Accounts keep their own timestamps; the transfer's is later.
    assert ledger.lookup_accounts([a])[0].timestamp < result.timestamp


def test_account_not_found_is_checked_before_ledgers(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
) -> None:
    """Account existence precedes the ledger checks, and a missing account burns the id."""
    (a,) = make_accounts(1, ledger=5)
    t = xfer(a, new_id(), 1, ledger=6)
    assert statuses(ledger.create_transfers([t])) == [S.CREDIT_ACCOUNT_NOT_FOUND]
    (b,) = make_accounts(1, ledger=5)
    assert statuses(ledger.create_transfers([xfer(a, b, 1, ledger=5, id=t.id)])) == [S.ID_ALREADY_FAILED]


def test_debits_must_not_exceed_credits_boundary(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """`dp + dpo + a > cpo` fails; equality passes; failure burns the id."""
    (a,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    b, f = make_accounts(2)
    t1 = xfer(a, b, 1)
    assert statuses(ledger.create_transfers([t1])) == [S.EXCEEDS_CREDITS]
    move(f, a, 10)
    assert statuses(ledger.create_transfers([t1])) == [S.ID_ALREADY_FAILED]
    assert statuses(ledger.create_transfers([xfer(a, b, 10), xfer(a, b, 1)])) == [
        S.CREATED,
        S.EXCEEDS_CREDITS,
    ]
    assert balance(a) == (0, 10, 0, 10)


def test_credits_must_not_exceed_debits(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """`cp + cpo + a > dpo` fails with `exceeds_debits`."""
    (lim,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    (f,) = make_accounts(1)
    batch = [xfer(f, lim, 1), xfer(lim, f, 5), xfer(f, lim, 5), xfer(f, lim, 1)]
    assert statuses(ledger.create_transfers(batch)) == [
        S.EXCEEDS_DEBITS,
        S.CREATED,
        S.CREATED,
        S.EXCEEDS_DEBITS,
    ]
    assert balance(lim) == (0, 5, 0, 5)


def test_pending_debits_count_against_the_limit(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Pessimistic pending — reserved debits count against `D<C`."""
    (a,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    b, f = make_accounts(2)
    move(f, a, 100)
    batch = [
        xfer(a, b, 70),
        xfer(a, b, 50, flags=TF.PENDING),
        xfer(a, b, 30, flags=TF.PENDING),
        xfer(a, b, 1),
    ]
    assert statuses(ledger.create_transfers(batch)) == [
        S.CREATED,
        S.EXCEEDS_CREDITS,
        S.CREATED,
        S.EXCEEDS_CREDITS,
    ]
    assert balance(a) == (30, 70, 0, 100)
    assert balance(b) == (0, 0, 30, 70)


def test_incoming_pending_is_not_spendable(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
) -> None:
    """Pending credits (debits) are not funds for `D<C` (`C<D`)."""
    (a,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (lim,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    b, f = make_accounts(2)
    incoming = move(f, a, 100, flags=TF.PENDING)
    move(lim, f, 100, flags=TF.PENDING)
    assert statuses(ledger.create_transfers([xfer(a, b, 1)])) == [S.EXCEEDS_CREDITS]
    assert statuses(ledger.create_transfers([xfer(f, lim, 1)])) == [S.EXCEEDS_DEBITS]
    post = xfer(0, 0, MAX, pending_id=incoming, flags=TF.POST_PENDING_TRANSFER, ledger=0, code=0)
    assert statuses(ledger.create_transfers([post, xfer(a, b, 100)])) == [S.CREATED, S.CREATED]


def test_pending_effects(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """A pending transfer adds to `dr.dp` and `cr.cp` only; it is stored with its timeout."""
    a, b = make_accounts(2)
    p = xfer(a, b, 40, flags=TF.PENDING, timeout=3600)
    assert statuses(ledger.create_transfers([p])) == [S.CREATED]
    assert balance(a) == (40, 0, 0, 0)
    assert balance(b) == (0, 0, 40, 0)
    stored = ledger.lookup_transfers([p.id])[0]
    assert (stored.amount, stored.flags, stored.timeout) == (40, TF.PENDING, 3600)


@pytest.mark.parametrize("flags", [TF.NONE, TF.PENDING], ids=["single_phase", "pending"])
def test_zero_amount_transfer(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
    flags: tb.TransferFlags,
) -> None:
    """`amount=0` is created, moves nothing, is listed and adds a history row."""
    (x1,) = make_accounts(1, flags=AF.HISTORY)
    (x2,) = make_accounts(1)
    t = xfer(x1, x2, 0, flags=flags)
    result = ledger.create_transfers([t])[0]
    assert result.status == S.CREATED
    assert balance(x1) == (0, 0, 0, 0)
    assert balance(x2) == (0, 0, 0, 0)
    assert ledger.lookup_transfers([t.id])[0].amount == 0
    assert [x.id for x in ledger.get_account_transfers(both(x1))] == [t.id]
    rows = ledger.get_account_balances(both(x1))
    assert [(r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted) for r in rows] == [
        (0, 0, 0, 0)
    ]
    assert [r.timestamp for r in rows] == [result.timestamp]


def test_amount_max_moves_max(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """A non-balancing `AMOUNT_MAX` is a literal amount of 2^128-1."""
    a, b = make_accounts(2)
    t = move(a, b, MAX)
    assert balance(a) == (0, MAX, 0, 0)
    assert balance(b) == (0, 0, 0, MAX)
    assert ledger.lookup_transfers([t])[0].amount == MAX


def _overflow_setup(
    kind: str,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    xfer: Callable[..., tb.Transfer],
) -> tb.Transfer:
    """Build balances near 2^128 and return the transfer that must overflow."""
    a, b, c = make_accounts(3)
    half = 2**127
    if kind == "debits_posted":
        move(a, b, MAX)
        return xfer(a, c, 1)
    if kind == "debits_posted_pending":
        move(a, b, MAX)
        return xfer(a, c, 1, flags=TF.PENDING)
    if kind == "credits_posted":
        move(a, b, MAX)
        return xfer(c, b, 1)
    if kind == "debits_pending":
        move(a, b, MAX, flags=TF.PENDING)
        return xfer(a, c, 1, flags=TF.PENDING)
    if kind == "credits_pending":
        move(a, b, MAX, flags=TF.PENDING)
        return xfer(c, b, 1, flags=TF.PENDING)
    if kind == "debits":
        move(a, b, half, flags=TF.PENDING)
        move(a, b, half - 1)
        return xfer(a, c, 1)
    assert kind == "credits"
    move(a, b, half, flags=TF.PENDING)
    move(a, b, half - 1)
    return xfer(c, b, 1)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("debits_posted", S.OVERFLOWS_DEBITS_POSTED),
        ("debits_posted_pending", S.OVERFLOWS_DEBITS_POSTED),
        ("credits_posted", S.OVERFLOWS_CREDITS_POSTED),
        ("debits_pending", S.OVERFLOWS_DEBITS_PENDING),
        ("credits_pending", S.OVERFLOWS_CREDITS_PENDING),
        ("debits", S.OVERFLOWS_DEBITS),
        ("credits", S.OVERFLOWS_CREDITS),
    ],
)
def test_overflow(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    xfer: Callable[..., tb.Transfer],
    kind: str,
    expected: tb.CreateTransferStatus,
) -> None:
    """u128 overflow of each balance and of each side's sum; not transient."""
    t = _overflow_setup(kind, make_accounts, move, xfer)
    assert statuses(ledger.create_transfers([t])) == [expected]
    assert ledger.lookup_transfers([t.id]) == []
    # Not transient: the id is not burned, a fixed transfer may reuse it.
    c, d = make_accounts(2)
    assert statuses(ledger.create_transfers([xfer(c, d, 1, id=t.id)])) == [S.CREATED]


def test_same_batch_visibility(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """Events see the effects of earlier events of the same request."""
    a, b = make_accounts(2)
    p = xfer(a, b, 5, flags=TF.PENDING)
    post = xfer(a, b, 5, pending_id=p.id, flags=TF.POST_PENDING_TRANSFER)
    t3 = xfer(a, b, 1)
    results = ledger.create_transfers([p, post, t3, t3])
    assert statuses(results) == [S.CREATED, S.CREATED, S.CREATED, S.EXISTS]
    assert results[3].timestamp == results[2].timestamp
    assert balance(a) == (0, 6, 0, 0)


def test_balancing_and_retries(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Clamped amounts, zero clamps are created, `amount ≥ recorded` exists."""
    (a1,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (a2,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    a3, f, g = make_accounts(3)
    move(f, a1, 10)
    move(a1, g, 1, flags=TF.PENDING)
    move(a2, g, 10)
    move(g, a2, 2, flags=TF.PENDING)
    assert balance(a1) == (1, 0, 0, 10)
    assert balance(a2) == (0, 10, 2, 0)
    bdr, bcr = TF.BALANCING_DEBIT, TF.BALANCING_CREDIT
    batch = [
        xfer(a1, a3, 3, flags=bdr),
        xfer(a1, a3, 13, flags=bdr),
        xfer(a3, a2, 3, flags=bcr),
        xfer(a3, a2, 13, flags=bcr),
        xfer(a1, a3, 1, flags=bdr),
        xfer(a3, a2, 1, flags=bcr),
        xfer(a1, a2, 1, flags=bdr | bcr),
        xfer(a1, a2, 1, flags=bdr),
    ]
    assert statuses(ledger.create_transfers(batch)) == [S.CREATED] * 8
    assert [t.amount for t in ledger.lookup_transfers([t.id for t in batch])] == [3, 6, 3, 5, 0, 0, 0, 0]
    t1, t2 = batch[0], batch[1]

    def retry(t: tb.Transfer, amount: int) -> tb.CreateTransferStatus:
        return ledger.create_transfers(
            [xfer(t.debit_account_id, t.credit_account_id, amount, id=t.id, flags=t.flags)]
        )[0].status

    assert retry(t1, 2) == S.EXISTS_WITH_DIFFERENT_AMOUNT
    assert retry(t1, 0) == S.EXISTS_WITH_DIFFERENT_AMOUNT
    assert retry(t1, 3) == S.EXISTS
    assert retry(t1, 4) == S.EXISTS
    assert retry(t2, 6) == S.EXISTS
    assert retry(t2, 0) == S.EXISTS_WITH_DIFFERENT_AMOUNT
    assert balance(a1) == (1, 9, 0, 10)
    assert balance(a2) == (0, 10, 2, 8)
    assert balance(a3) == (0, 8, 0, 9)


@pytest.mark.parametrize("side", ["debit", "credit"])
def test_one_sided_balancing_still_hits_other_limit(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    side: str,
) -> None:
    """Clamping one side does not bypass the other side's limit check."""
    f, g = make_accounts(2)
    if side == "debit":
        (lim,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
        (other,) = make_accounts(1)
        move(f, lim, 4)  # lim: cpo 4
        move(other, g, 5)  # other: dpo 5
        wrong = xfer(lim, other, 10, flags=TF.BALANCING_CREDIT)  # clamps to 5 > 4
        right = xfer(lim, other, 10, flags=TF.BALANCING_DEBIT)
        expected = S.EXCEEDS_CREDITS
    else:
        (lim,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
        (other,) = make_accounts(1)
        move(lim, f, 4)  # lim: dpo 4
        move(g, other, 5)  # other: cpo 5
        wrong = xfer(other, lim, 10, flags=TF.BALANCING_DEBIT)  # clamps to 5 > 4
        right = xfer(other, lim, 10, flags=TF.BALANCING_CREDIT)
        expected = S.EXCEEDS_DEBITS
    assert statuses(ledger.create_transfers([wrong, right])) == [expected, S.CREATED]
    assert ledger.lookup_transfers([right.id])[0].amount == 4


def test_balancing_without_limit_flags(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """Clamping applies without limit flags; an empty account clamps to 0 and is created."""
    a, b = make_accounts(2)
    t = xfer(a, b, 99, flags=TF.BALANCING_DEBIT)
    assert statuses(ledger.create_transfers([t])) == [S.CREATED]
    stored = ledger.lookup_transfers([t.id])[0]
    assert stored.amount == 0
    assert stored.flags == TF.BALANCING_DEBIT


def test_balancing_amount_zero_moves_zero(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """With `balancing_*`, amount 0 moves 0 (not "as much as possible"); MAX moves all."""
    a, b, f = make_accounts(3)
    move(f, a, 30)
    zero = xfer(a, b, 0, flags=TF.BALANCING_DEBIT)
    everything = xfer(a, b, MAX, flags=TF.BALANCING_DEBIT)
    assert statuses(ledger.create_transfers([zero, everything])) == [S.CREATED, S.CREATED]
    assert [t.amount for t in ledger.lookup_transfers([zero.id, everything.id])] == [0, 30]
    assert balance(a) == (0, 30, 0, 30)


def test_pending_balancing(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """`PENDING|BALANCING_DEBIT` clamps against pending debits too."""
    (a1,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (a2,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    f, g = make_accounts(2)
    move(f, a1, 10)
    move(a2, g, 10)
    flags = TF.PENDING | TF.BALANCING_DEBIT
    batch = [xfer(a1, a2, 3, flags=flags), xfer(a1, a2, 13, flags=flags), xfer(a1, a2, 1, flags=flags)]
    assert statuses(ledger.create_transfers(batch)) == [S.CREATED] * 3
    assert [t.amount for t in ledger.lookup_transfers([t.id for t in batch])] == [3, 7, 0]
    assert balance(a1) == (10, 0, 0, 10)
    assert balance(a2) == (0, 10, 10, 0)
