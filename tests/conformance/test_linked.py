"""Linked transfer chains: atomic rollback, `linked_event_failed`, open chains, `exists` inside a chain,
burned ids surviving rollback, and the recipes built on chains."""

from __future__ import annotations

from collections.abc import Callable

import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

S = tb.CreateTransferStatus
TF = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX
L = TF.LINKED
Balance = tuple[int, int, int, int]


def statuses(results: list[tb.CreateTransferResult]) -> list[tb.CreateTransferStatus]:
    return [r.status for r in results]


def test_chain_rollback_is_invisible_to_later_events(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """A broken chain is rolled back before the next event runs."""
    (a1,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    a2, f = make_accounts(2)
    move(f, a1, 20)
    t1, t2, t3 = xfer(a1, a2, 15, flags=L), xfer(a1, a2, 5, ledger=0), xfer(a1, a2, 15)
    results = ledger.create_transfers([t1, t2, t3])
    assert statuses(results) == [S.LINKED_EVENT_FAILED, S.LEDGER_MUST_NOT_BE_ZERO, S.CREATED]
    assert results[1].timestamp - results[0].timestamp == 1
    assert balance(a1) == (0, 15, 0, 20)
    assert [t.id for t in ledger.lookup_transfers([t1.id, t2.id, t3.id])] == [t3.id]


def test_retrying_a_committed_chain(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """`exists` breaks a chain, so a retried chain gives [EXISTS, LEF]; nothing posts twice."""
    a, b = make_accounts(2)
    chain = [xfer(a, b, 10, flags=L), xfer(a, b, 1)]
    first = ledger.create_transfers(chain)
    assert statuses(first) == [S.CREATED, S.CREATED]
    retry = ledger.create_transfers(chain)
    assert statuses(retry) == [S.EXISTS, S.LINKED_EVENT_FAILED]
    assert retry[0].timestamp == first[0].timestamp
    assert ledger.lookup_transfers([chain[0].id])[0].flags == L
    # The linked bit is part of idempotency.
    unlinked = xfer(a, b, 10, id=chain[0].id)
    assert statuses(ledger.create_transfers([unlinked])) == [S.EXISTS_WITH_DIFFERENT_FLAGS]
    assert balance(a) == (0, 11, 0, 0)


def test_transient_failure_in_chain_burns_only_that_id(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """The burn survives the chain's rollback."""
    a1, a2 = make_accounts(2)
    (a3,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    t1 = xfer(a1, a2, 41, flags=L)
    t2 = xfer(a2, a3, 1, flags=L | TF.PENDING | TF.BALANCING_DEBIT)
    t3 = xfer(0, 0, 0, pending_id=t2.id, flags=TF.VOID_PENDING_TRANSFER, ledger=0, code=0)
    assert statuses(ledger.create_transfers([t1, t2, t3])) == [
        S.LINKED_EVENT_FAILED,
        S.EXCEEDS_DEBITS,
        S.LINKED_EVENT_FAILED,
    ]
    assert balance(a1) == (0, 0, 0, 0)
    reuse = [xfer(a1, a2, 1, id=t1.id), xfer(a1, a2, 1, id=t2.id), xfer(a1, a2, 1, id=t3.id)]
    assert statuses(ledger.create_transfers(reuse)) == [S.CREATED, S.ID_ALREADY_FAILED, S.CREATED]
    # The same invariant chain passes once a3 has debits to cover the credit.
    (a4,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    (g,) = make_accounts(1)
    move(a4, g, 1)
    u2 = xfer(a2, a4, 1, flags=L | TF.PENDING | TF.BALANCING_DEBIT)
    chain = [
        xfer(a1, a2, 41, flags=L),
        u2,
        xfer(0, 0, 0, pending_id=u2.id, flags=TF.VOID_PENDING_TRANSFER, ledger=0, code=0),
    ]
    assert statuses(ledger.create_transfers(chain)) == [S.CREATED] * 3
    assert balance(a4) == (0, 1, 0, 0)


def test_chain_open_after_a_break(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """The last event being linked wins over an already broken chain."""
    a, b = make_accounts(2)
    t1, t2 = xfer(a, b, 1, flags=L, ledger=0), xfer(a, b, 1, flags=L)
    results = ledger.create_transfers([t1, t2])
    assert statuses(results) == [S.LEDGER_MUST_NOT_BE_ZERO, S.LINKED_EVENT_CHAIN_OPEN]
    assert results[1].timestamp - results[0].timestamp == 1
    assert ledger.lookup_transfers([t1.id, t2.id]) == []


def test_single_linked_event_is_an_open_chain(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """A lone linked transfer fails with `linked_event_chain_open`; id reusable."""
    a, b = make_accounts(2)
    t = xfer(a, b, 1, flags=L)
    assert statuses(ledger.create_transfers([t])) == [S.LINKED_EVENT_CHAIN_OPEN]
    assert statuses(ledger.create_transfers([xfer(a, b, 1, id=t.id)])) == [S.CREATED]


def test_exists_inside_chain_breaks_it(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """An `exists` in the middle of a chain rolls back the events before it."""
    a, b = make_accounts(2)
    old = move(a, b, 5)
    first = xfer(a, b, 7, flags=L)
    again = xfer(a, b, 5, id=old, flags=L)
    last = xfer(a, b, 9)
    assert statuses(ledger.create_transfers([first, again, last])) == [
        S.LINKED_EVENT_FAILED,
        S.EXISTS_WITH_DIFFERENT_FLAGS,
        S.LINKED_EVENT_FAILED,
    ]
    again_same = xfer(a, b, 5, id=old)
    chain = [xfer(a, b, 7, id=first.id, flags=L), again_same]
    assert statuses(ledger.create_transfers(chain)) == [S.LINKED_EVENT_FAILED, S.EXISTS]
    assert balance(a) == (0, 5, 0, 0)
    assert ledger.lookup_transfers([first.id, last.id]) == []


def test_rolled_back_ids_are_reusable_in_the_same_batch(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """Rolled-back ids are not burned; multiple chains and lone events coexist."""
    a, b = make_accounts(2)
    t1 = xfer(a, b, 1, flags=L)
    batch = [
        t1,
        xfer(a, b, 2, code=0),
        xfer(a, b, 3, id=t1.id),
        xfer(a, b, 4, flags=L),
        xfer(a, b, 5),
        xfer(a, b, 6),
    ]
    assert statuses(ledger.create_transfers(batch)) == [
        S.LINKED_EVENT_FAILED,
        S.CODE_MUST_NOT_BE_ZERO,
        S.CREATED,
        S.CREATED,
        S.CREATED,
        S.CREATED,
    ]
    assert ledger.lookup_transfers([t1.id])[0].amount == 3
    assert balance(a) == (0, 18, 0, 0)


def test_rollback_restores_pending_and_closed_state(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """When a chain breaks, balances, the `closed` flag and the pending status are all undone."""
    a, b = make_accounts(2)
    p = move(a, b, 10, flags=TF.PENDING)
    chain = [
        xfer(0, 0, MAX, pending_id=p, flags=TF.POST_PENDING_TRANSFER | L, ledger=0, code=0),
        xfer(a, b, 0, flags=TF.PENDING | TF.CLOSING_DEBIT | L),
        xfer(a, b, 1, ledger=0),
    ]
    assert statuses(ledger.create_transfers(chain)) == [
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_FAILED,
        S.LEDGER_MUST_NOT_BE_ZERO,
    ]
    assert balance(a) == (10, 0, 0, 0)
    assert ledger.lookup_accounts([a])[0].flags == AF.NONE
    # The pending transfer is still pending: it can be posted now, and a new transfer from `a` succeeds.
    post = xfer(0, 0, 4, pending_id=p, flags=TF.POST_PENDING_TRANSFER, ledger=0, code=0)
    assert statuses(ledger.create_transfers([post, xfer(a, b, 1)])) == [S.CREATED, S.CREATED]
    assert balance(a) == (0, 5, 0, 0)


def test_currency_exchange(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Two linked legs on two ledgers move together or not at all."""
    a1, l1 = make_accounts(2, ledger=1)
    a2, src2 = make_accounts(2, ledger=2)
    (l2,) = make_accounts(1, ledger=2, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    move(src2, l2, 1000, ledger=2)
    legs = [xfer(a1, l1, 100, flags=L), xfer(l2, a2, 8242, ledger=2)]
    assert statuses(ledger.create_transfers(legs)) == [S.LINKED_EVENT_FAILED, S.EXCEEDS_CREDITS]
    assert balance(a1) == (0, 0, 0, 0)
    assert balance(l2) == (0, 0, 0, 1000)
    move(src2, l2, 8000, ledger=2)
    legs = [xfer(a1, l1, 100, flags=L), xfer(l2, a2, 8242, ledger=2)]
    assert statuses(ledger.create_transfers(legs)) == [S.CREATED, S.CREATED]
    assert balance(l1) == (0, 0, 0, 100)
    assert balance(a2) == (0, 0, 0, 8242)
    assert statuses(ledger.create_transfers([xfer(a1, a2, 1)])) == [S.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER]


def test_balance_conditional_transfer(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """[pending threshold L, void L, transfer] runs only at the threshold."""
    (src,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    ctl, dst, f = make_accounts(3)
    move(f, src, 50)

    def chain(threshold: int) -> list[tb.Transfer]:
        hold = xfer(src, ctl, threshold, flags=TF.PENDING | L)
        release = xfer(0, 0, 0, pending_id=hold.id, flags=TF.VOID_PENDING_TRANSFER | L, ledger=0, code=0)
        return [hold, release, xfer(src, dst, 10)]

    assert statuses(ledger.create_transfers(chain(100))) == [
        S.EXCEEDS_CREDITS,
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_FAILED,
    ]
    assert statuses(ledger.create_transfers(chain(40))) == [S.CREATED] * 3
    assert balance(src) == (0, 10, 0, 50)
    assert balance(ctl) == (0, 0, 0, 0)
    assert balance(dst) == (0, 0, 0, 10)


def test_a_payment_as_one_posted_chain_moves_whole_or_not_at_all(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """A payment in one round trip (docs/saga.md, the `transfer` step): [principal L, payer's fee L,
    payee's fee], posted. A fee the payer cannot cover fails the whole chain: nothing posts, and the
    failing id stays burned, so the same chain sent again never posts, even once it would fit. A
    payee's fee later in a chain is paid out of the principal credited earlier in it."""
    payer, payee = make_accounts(2, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    revenue, funding = make_accounts(2)
    move(funding, payer, 1_000)

    def payment(amount: int, payer_fee: int, payee_fee: int) -> list[tb.Transfer]:
        return [
            xfer(payer, payee, amount, flags=L),
            xfer(payer, revenue, payer_fee, flags=L),
            xfer(payee, revenue, payee_fee),
        ]

    short = payment(990, 20, 5)
    assert statuses(ledger.create_transfers(short)) == [
        S.LINKED_EVENT_FAILED,
        S.EXCEEDS_CREDITS,
        S.LINKED_EVENT_FAILED,
    ]
    assert ledger.lookup_transfers([t.id for t in short]) == []
    assert [balance(a) for a in (payer, payee, revenue)] == [(0, 0, 0, 1_000), (0, 0, 0, 0), (0, 0, 0, 0)]
    move(funding, payer, 1_000)
    assert statuses(ledger.create_transfers(short)) == [
        S.LINKED_EVENT_FAILED,
        S.ID_ALREADY_FAILED,
        S.LINKED_EVENT_FAILED,
    ]
    assert ledger.lookup_transfers([t.id for t in short]) == []
    assert balance(payee) == (0, 0, 0, 0)

    # The payee starts at 0 and pays its fee from the principal the same chain credited it.
    paid = payment(990, 20, 5)
    assert statuses(ledger.create_transfers(paid)) == [S.CREATED] * 3
    assert [balance(a) for a in (payer, payee, revenue)] == [
        (0, 1_010, 0, 2_000),
        (0, 5, 0, 990),
        (0, 0, 0, 25),
    ]
    # Sent again (a redelivered command): EXISTS breaks the chain, and nothing moves twice.
    assert statuses(ledger.create_transfers(paid)) == [
        S.EXISTS,
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_FAILED,
    ]
    assert balance(payer) == (0, 1_010, 0, 2_000)
