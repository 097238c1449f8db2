"""Two-phase transfers: pending, post (partial, full, AMOUNT_MAX, 0), void, double resolution,
post/void precedence and idempotency, user_data inheritance, timeouts and expiry."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

S = tb.CreateTransferStatus
TF = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX
POST = TF.POST_PENDING_TRANSFER
VOID = TF.VOID_PENDING_TRANSFER
Balance = tuple[int, int, int, int]


def statuses(results: list[tb.CreateTransferResult]) -> list[tb.CreateTransferStatus]:
    return [r.status for r in results]


def resolve(
    pending_id: int, amount: int, flags: tb.TransferFlags, id_: int = 0, **fields: int
) -> tb.Transfer:
    """A post or void with every optional field zero."""
    return tb.Transfer(id=id_ or tb.id(), pending_id=pending_id, amount=amount, flags=flags, **fields)


def test_full_post_with_amount_max_and_zeroed_fields(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """AMOUNT_MAX posts the pending amount; dr/cr/ledger/code inherited."""
    a, b = make_accounts(2)
    p = move(a, b, 100, code=7, flags=TF.PENDING, user_data_64=5)
    assert balance(a) == (100, 0, 0, 0)
    assert balance(b) == (0, 0, 100, 0)
    q = resolve(p, MAX, POST)
    result = ledger.create_transfers([q])[0]
    assert result.status == S.CREATED
    assert ledger.lookup_transfers([q.id])[0] == tb.Transfer(
        id=q.id,
        debit_account_id=a,
        credit_account_id=b,
        amount=100,
        pending_id=p,
        user_data_64=5,
        timeout=0,
        ledger=1,
        code=7,
        flags=POST,
        timestamp=result.timestamp,
    )
    pending = ledger.lookup_transfers([p])[0]
    assert (pending.flags, pending.amount, pending.pending_id) == (TF.PENDING, 100, 0)
    assert balance(a) == (0, 100, 0, 0)
    assert balance(b) == (0, 0, 0, 100)


def test_partial_post_and_double_resolution(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Partial post releases the whole reservation; one resolution."""
    a, b = make_accounts(2)
    p = move(a, b, 100, flags=TF.PENDING)
    batch = [resolve(p, 60, POST), resolve(p, 10, POST), resolve(p, 0, VOID)]
    assert statuses(ledger.create_transfers(batch)) == [
        S.CREATED,
        S.PENDING_TRANSFER_ALREADY_POSTED,
        S.PENDING_TRANSFER_ALREADY_POSTED,
    ]
    assert balance(a) == (0, 60, 0, 0)
    assert balance(b) == (0, 0, 0, 60)


def test_post_with_amount_zero(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """A post of 0 posts zero and releases the whole reservation."""
    a, b = make_accounts(2)
    p = move(a, b, 100, flags=TF.PENDING)
    q = resolve(p, 0, POST)
    assert statuses(ledger.create_transfers([q])) == [S.CREATED]
    assert ledger.lookup_transfers([q.id])[0].amount == 0
    assert balance(a) == (0, 0, 0, 0)
    assert balance(b) == (0, 0, 0, 0)


def test_void_amount_rules(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Void amount 0 means the pending amount."""
    a, b = make_accounts(2)
    p = move(a, b, 100, flags=TF.PENDING)
    v = tb.id()
    batch = [
        resolve(p, 50, VOID),
        resolve(p, 150, VOID),
        resolve(p, 0, VOID, v),
        resolve(p, MAX, POST),
        resolve(p, 0, VOID, v),
        resolve(p, 100, VOID, v),
        resolve(p, 99, VOID, v),
    ]
    results = ledger.create_transfers(batch)
    assert statuses(results) == [
        S.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.CREATED,
        S.PENDING_TRANSFER_ALREADY_VOIDED,
        S.EXISTS,
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert results[4].timestamp == results[2].timestamp
    void = ledger.lookup_transfers([v])[0]
    assert (void.amount, void.flags, void.debit_account_id, void.credit_account_id) == (100, VOID, a, b)
    assert balance(a) == (0, 0, 0, 0)
    assert balance(b) == (0, 0, 0, 0)


def test_post_above_pending_amount(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], move: Callable[..., int]
) -> None:
    """A post above the pending amount (even MAX-1) fails."""
    a, b = make_accounts(2)
    p = move(a, b, 100, flags=TF.PENDING)
    assert statuses(ledger.create_transfers([resolve(p, 101, POST), resolve(p, MAX - 1, POST)])) == [
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
    ]


def test_post_void_precedence(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
) -> None:
    """Each event fixes the previous event's first failing check."""
    a, b, x = make_accounts(3)
    p = move(a, b, 10, code=7, flags=TF.PENDING)
    n = move(a, b, 1)
    q7, q15 = new_id(), new_id()

    def q(id_: int = 0, **fields: int) -> tb.Transfer:
        base: dict[str, int] = {"id": id_ or new_id(), "pending_id": p, "flags": POST}
        base.update(fields)
        return tb.Transfer(**base)  # type: ignore[arg-type]

    bad = {"debit_account_id": x, "credit_account_id": x, "ledger": 2, "code": 8, "amount": 101, "timeout": 1}
    batch = [
        q(**{**bad, "flags": POST | VOID, "pending_id": 0}),
        q(**{**bad, "flags": POST | TF.PENDING, "pending_id": 0}),
        q(**{**bad, "flags": POST | TF.BALANCING_DEBIT, "pending_id": 0}),
        q(**{**bad, "flags": VOID | TF.CLOSING_CREDIT, "pending_id": 0}),
        q(**{**bad, "pending_id": 0}),
        q(**{**bad, "pending_id": MAX}),
        q(q7, **{**bad, "pending_id": q7}),
        q(**bad),
        q(**{**bad, "timeout": 0, "pending_id": n}),
        q(**{**bad, "timeout": 0}),
        q(**{**bad, "timeout": 0, "debit_account_id": 0}),
        q(**{**bad, "timeout": 0, "debit_account_id": 0, "credit_account_id": 0}),
        q(amount=101, code=8),
        q(amount=101),
        q(q15, amount=101, pending_id=new_id()),
        q(q15),
    ]
    assert statuses(ledger.create_transfers(batch)) == [
        S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        S.PENDING_ID_MUST_NOT_BE_ZERO,
        S.PENDING_ID_MUST_NOT_BE_INT_MAX,
        S.PENDING_ID_MUST_BE_DIFFERENT,
        S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        S.PENDING_TRANSFER_NOT_PENDING,
        S.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        S.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID,
        S.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER,
        S.PENDING_TRANSFER_HAS_DIFFERENT_CODE,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.PENDING_TRANSFER_NOT_FOUND,
        S.ID_ALREADY_FAILED,
    ]
    assert statuses(ledger.create_transfers([q(amount=MAX)])) == [S.CREATED]
    # Field and amount checks come before the already-posted check.
    after = [q(code=99), q(amount=11, flags=VOID), q(flags=VOID)]
    assert statuses(ledger.create_transfers(after)) == [
        S.PENDING_TRANSFER_HAS_DIFFERENT_CODE,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.PENDING_TRANSFER_ALREADY_POSTED,
    ]


def test_post_may_name_matching_fields(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """dr/cr/ledger/code may be given when they match the pending."""
    a, b = make_accounts(2)
    p = move(a, b, 30, code=4, flags=TF.PENDING)
    post = tb.Transfer(
        id=tb.id(),
        debit_account_id=a,
        credit_account_id=b,
        amount=30,
        pending_id=p,
        ledger=1,
        code=4,
        flags=POST,
    )
    assert statuses(ledger.create_transfers([post])) == [S.CREATED]
    assert balance(b) == (0, 0, 0, 30)


def test_user_data_inheritance(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], move: Callable[..., int]
) -> None:
    """user_data 0 on a post inherits the pending's; retries compare so."""
    a, b = make_accounts(2)
    ud = {"user_data_128": 11, "user_data_64": 12, "user_data_32": 13}
    p1 = move(a, b, 5, flags=TF.PENDING, **ud)
    p2 = move(a, b, 5, flags=TF.PENDING, **ud)
    q = resolve(p1, MAX, POST)
    assert statuses(ledger.create_transfers([q])) == [S.CREATED]
    stored = ledger.lookup_transfers([q.id])[0]
    assert (stored.user_data_128, stored.user_data_64, stored.user_data_32) == (11, 12, 13)
    assert statuses(ledger.create_transfers([resolve(p1, MAX, POST, q.id, **ud)])) == [S.EXISTS]
    assert statuses(ledger.create_transfers([resolve(p1, MAX, POST, q.id)])) == [S.EXISTS]
    assert statuses(ledger.create_transfers([resolve(p1, MAX, POST, q.id, user_data_128=99)])) == [
        S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    ]
    q2 = resolve(p2, MAX, POST, user_data_128=22)
    assert statuses(ledger.create_transfers([q2])) == [S.CREATED]
    stored2 = ledger.lookup_transfers([q2.id])[0]
    assert (stored2.user_data_128, stored2.user_data_64, stored2.user_data_32) == (22, 12, 13)


def test_post_idempotency_versus_amount(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """A post retry compares its resolved amount with the recorded one."""
    a, b = make_accounts(2)
    p1, p2, p3 = (move(a, b, n, flags=TF.PENDING) for n in (15, 7, 1))
    q1, q2, q3 = tb.id(), tb.id(), tb.id()
    first = [resolve(p1, 13, POST, q1), resolve(p2, MAX, POST, q2), resolve(p3, 0, POST, q3)]
    assert statuses(ledger.create_transfers(first)) == [S.CREATED] * 3
    ewda = S.EXISTS_WITH_DIFFERENT_AMOUNT
    retries = [
        (p1, q1, 14, ewda),
        (p1, q1, MAX, ewda),
        (p1, q1, 0, ewda),
        (p1, q1, 13, S.EXISTS),
        (p2, q2, 7, S.EXISTS),
        (p2, q2, MAX, S.EXISTS),
        (p2, q2, 8, ewda),
        (p2, q2, 0, ewda),
        (p3, q3, 0, S.EXISTS),
        (p3, q3, 1, ewda),
    ]
    got = statuses(ledger.create_transfers([resolve(p, amount, POST, q) for p, q, amount, _ in retries]))
    assert got == [expected for *_, expected in retries]
    assert [t.amount for t in ledger.lookup_transfers([q1, q2, q3])] == [13, 7, 0]
    assert balance(a) == (0, 20, 0, 0)


def test_void_releases_and_inherits(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """A void releases the reservation and stores the pending's dr, cr, ledger and code."""
    a, b = make_accounts(2)
    p = move(a, b, 42, code=3, flags=TF.PENDING)
    v = resolve(p, 0, VOID)
    result = ledger.create_transfers([v])[0]
    assert result.status == S.CREATED
    assert ledger.lookup_transfers([v.id])[0] == tb.Transfer(
        id=v.id,
        debit_account_id=a,
        credit_account_id=b,
        amount=42,
        pending_id=p,
        ledger=1,
        code=3,
        flags=VOID,
        timestamp=result.timestamp,
    )
    assert balance(a) == (0, 0, 0, 0)
    assert balance(b) == (0, 0, 0, 0)
    assert statuses(ledger.create_transfers([resolve(p, MAX, POST)])) == [S.PENDING_TRANSFER_ALREADY_VOIDED]


def test_pending_transfer_not_found_burns_the_id(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
) -> None:
    """`pending_transfer_not_found` is transient, so the post's id is burned."""
    a, b = make_accounts(2)
    q = resolve(new_id(), MAX, POST)
    assert statuses(ledger.create_transfers([q])) == [S.PENDING_TRANSFER_NOT_FOUND]
    p = move(a, b, 1, flags=TF.PENDING)
    assert statuses(ledger.create_transfers([resolve(p, MAX, POST, q.id)])) == [S.ID_ALREADY_FAILED]


def test_expiry(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
    wait_for: Callable[[Callable[[], bool]], None],
) -> None:
    """Timeout 1 s expires; post/void then fail (not transient); no balance row for expiry."""
    (a,) = make_accounts(1, flags=AF.HISTORY)
    (b,) = make_accounts(1)
    p1 = move(a, b, 10, flags=TF.PENDING, timeout=1)
    move(a, b, 20, flags=TF.PENDING)
    assert balance(a) == (30, 0, 0, 0)
    time.sleep(1.2)
    wait_for(lambda: balance(a) == (20, 0, 0, 0))
    post_max = resolve(p1, MAX, POST)
    batch = [post_max, resolve(p1, 0, VOID), resolve(p1, 11, POST)]
    assert statuses(ledger.create_transfers(batch)) == [
        S.PENDING_TRANSFER_EXPIRED,
        S.PENDING_TRANSFER_EXPIRED,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
    ]
    stored = ledger.lookup_transfers([p1])[0]
    assert (stored.amount, stored.flags, stored.timeout) == (10, TF.PENDING, 1)
    flt = tb.AccountFilter(
        account_id=a,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=10,
        flags=tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS,
    )
    rows = ledger.get_account_balances(flt)
    assert [(r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted) for r in rows] == [
        (10, 0, 0, 0),
        (30, 0, 0, 0),
    ]
    # `pending_transfer_expired` is not transient: the failed post's id may be used again.
    p3 = move(a, b, 1, flags=TF.PENDING)
    assert statuses(ledger.create_transfers([resolve(p3, MAX, POST, post_max.id)])) == [S.CREATED]


def test_psp_authorize_capture(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Hold with timeout, partial capture, idempotent retry, late void, query by payment."""
    (cust,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    clearing, funding = make_accounts(2)
    move(funding, cust, 1000)
    payment = tb.id()
    auth = move(cust, clearing, 300, flags=TF.PENDING, timeout=3600, user_data_128=payment)
    assert balance(cust) == (300, 0, 0, 1000)
    capture = resolve(auth, 250, POST)
    assert statuses(ledger.create_transfers([capture])) == [S.CREATED]
    assert statuses(ledger.create_transfers([capture])) == [S.EXISTS]
    assert statuses(ledger.create_transfers([resolve(auth, 0, VOID)])) == [S.PENDING_TRANSFER_ALREADY_POSTED]
    assert balance(cust) == (0, 250, 0, 1000)
    found = ledger.query_transfers(
        tb.QueryFilter(
            user_data_128=payment,
            user_data_64=0,
            user_data_32=0,
            ledger=0,
            code=0,
            timestamp_min=0,
            timestamp_max=0,
            limit=10,
            flags=tb.QueryFilterFlags.NONE,
        )
    )
    assert [t.id for t in found] == [auth, capture.id]


@pytest.mark.parametrize(
    ("pending_amount", "flags", "amount", "expected", "stored"),
    [
        (100, VOID, MAX, S.EXCEEDS_PENDING_TRANSFER_AMOUNT, None),
        (MAX, VOID, MAX, S.CREATED, MAX),
        (MAX, VOID, 0, S.CREATED, MAX),
        (0, VOID, 0, S.CREATED, 0),
        (0, POST, MAX, S.CREATED, 0),
        (0, POST, 0, S.CREATED, 0),
        (0, POST, 1, S.EXCEEDS_PENDING_TRANSFER_AMOUNT, None),
        (5, POST, 5, S.CREATED, 5),
        (5, VOID, 5, S.CREATED, 5),
    ],
    ids=[
        "void_max_of_100",
        "void_max_of_max",
        "void_0_of_max",
        "void_0_of_0",
        "post_max_of_0",
        "post_0_of_0",
        "post_1_of_0",
        "post_exact",
        "void_exact",
    ],
)
def test_resolution_amount_table(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    pending_amount: int,
    flags: tb.TransferFlags,
    amount: int,
    expected: tb.CreateTransferStatus,
    stored: int | None,
) -> None:
    """Resolved amount for post (MAX = pending) and void (0 = pending)."""
    a, b = make_accounts(2)
    p = move(a, b, pending_amount, flags=TF.PENDING)
    q = resolve(p, amount, flags)
    assert statuses(ledger.create_transfers([q])) == [expected]
    found = ledger.lookup_transfers([q.id])
    assert [t.amount for t in found] == ([] if stored is None else [stored])


def test_post_retry_compares_against_the_resolved_fields(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], move: Callable[..., int]
) -> None:
    """On a post retry, non-zero dr/cr/ledger/code must equal the stored post's."""
    a, b, c = make_accounts(3)
    p = move(a, b, 8, code=6, flags=TF.PENDING)
    q = resolve(p, MAX, POST)
    assert statuses(ledger.create_transfers([q])) == [S.CREATED]

    def retry(**fields: int) -> tb.CreateTransferStatus:
        return ledger.create_transfers([resolve(p, MAX, POST, q.id, **fields)])[0].status

    assert retry(debit_account_id=a, credit_account_id=b, ledger=1, code=6) == S.EXISTS
    assert retry(debit_account_id=c) == S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    assert retry(credit_account_id=c) == S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    assert retry(ledger=2) == S.EXISTS_WITH_DIFFERENT_LEDGER
    assert retry(code=5) == S.EXISTS_WITH_DIFFERENT_CODE
    assert retry(user_data_32=1) == S.EXISTS_WITH_DIFFERENT_USER_DATA_32
    assert retry(timeout=1) == S.EXISTS_WITH_DIFFERENT_TIMEOUT
    other = ledger.create_transfers([resolve(move(a, b, 1, flags=TF.PENDING), MAX, POST, q.id)])[0]
    assert other.status == S.EXISTS_WITH_DIFFERENT_PENDING_ID
    flags_differ = ledger.create_transfers([resolve(p, 0, VOID, q.id)])[0]
    assert flags_differ.status == S.EXISTS_WITH_DIFFERENT_FLAGS
