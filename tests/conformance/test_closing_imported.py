"""Closing accounts and imported events."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

S = tb.CreateTransferStatus
AS = tb.CreateAccountStatus
TF = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX
Balance = tuple[int, int, int, int]


def statuses(results: list[tb.CreateTransferResult]) -> list[tb.CreateTransferStatus]:
    return [r.status for r in results]


def flags_of(ledger: LedgerSync, account_id: int) -> tb.AccountFlags:
    return ledger.lookup_accounts([account_id])[0].flags


def resolve(pending_id: int, flags: tb.TransferFlags, amount: int = 0) -> tb.Transfer:
    return tb.Transfer(id=tb.id(), pending_id=pending_id, amount=amount, flags=flags)


def test_closing_accounts(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """Closing, rejection, `closed` in idempotency, re-opening by void."""
    a1, a2 = make_accounts(2)
    closing = xfer(a1, a2, 0, flags=TF.PENDING | TF.CLOSING_DEBIT)
    t5 = xfer(a1, a2, 5)
    batch = [
        xfer(a1, a2, 15),
        xfer(a1, a2, 0, flags=TF.CLOSING_DEBIT),
        closing,
        closing,
        t5,
        t5,
        xfer(a2, a1, 5),
    ]
    assert statuses(ledger.create_transfers(batch)) == [
        S.CREATED,
        S.CLOSING_TRANSFER_MUST_BE_PENDING,
        S.CREATED,
        S.EXISTS,
        S.DEBIT_ACCOUNT_ALREADY_CLOSED,
        S.ID_ALREADY_FAILED,
        S.CREDIT_ACCOUNT_ALREADY_CLOSED,
    ]
    assert flags_of(ledger, a1) == AF.CLOSED
    retry = ledger.create_accounts(
        [tb.Account(id=a1, ledger=1, code=1), tb.Account(id=a1, ledger=1, code=1, flags=AF.CLOSED)]
    )
    assert [r.status for r in retry] == [AS.EXISTS_WITH_DIFFERENT_FLAGS, AS.EXISTS]
    assert statuses(ledger.create_transfers([resolve(closing.id, TF.POST_PENDING_TRANSFER)])) == [
        S.DEBIT_ACCOUNT_ALREADY_CLOSED
    ]
    assert statuses(ledger.create_transfers([resolve(closing.id, TF.VOID_PENDING_TRANSFER)])) == [S.CREATED]
    assert flags_of(ledger, a1) == AF.NONE
    assert statuses(ledger.create_transfers([xfer(a1, a2, 5)])) == [S.CREATED]
    assert balance(a1) == (0, 20, 0, 0)


def test_pending_into_an_account_closed_later(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Posting into a closed account fails (transient); voiding works."""
    x, y, z = make_accounts(3)
    p1 = move(x, y, 3, flags=TF.PENDING)
    p2 = move(x, y, 4, flags=TF.PENDING)
    move(y, z, 0, flags=TF.PENDING | TF.CLOSING_DEBIT)
    assert flags_of(ledger, y) == AF.CLOSED
    post = resolve(p1, TF.POST_PENDING_TRANSFER, MAX)
    assert statuses(ledger.create_transfers([post])) == [S.CREDIT_ACCOUNT_ALREADY_CLOSED]
    assert statuses(ledger.create_transfers([resolve(p1, TF.VOID_PENDING_TRANSFER)])) == [S.CREATED]
    # The failed post burned its id: reusing it for p2 fails even though p2 itself is fine.
    again = tb.Transfer(id=post.id, pending_id=p2, amount=0, flags=TF.VOID_PENDING_TRANSFER)
    assert statuses(ledger.create_transfers([again])) == [S.ID_ALREADY_FAILED]
    assert balance(y) == (0, 0, 4, 0)
    assert flags_of(ledger, y) == AF.CLOSED


def test_closing_both_sides(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """`closing_debit|closing_credit` closes both; closing again fails on the debit side."""
    a, b = make_accounts(2)
    both = TF.PENDING | TF.CLOSING_DEBIT | TF.CLOSING_CREDIT
    assert statuses(ledger.create_transfers([xfer(a, b, 0, flags=both), xfer(a, b, 0, flags=both)])) == [
        S.CREATED,
        S.DEBIT_ACCOUNT_ALREADY_CLOSED,
    ]
    assert flags_of(ledger, a) == AF.CLOSED
    assert flags_of(ledger, b) == AF.CLOSED


def test_expiry_of_closing_transfer_reopens(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
    wait_for: Callable[[Callable[[], bool]], None],
) -> None:
    """A closing pending transfer that expires re-opens the account."""
    c, d = make_accounts(2)
    move(c, d, 0, flags=TF.PENDING | TF.CLOSING_CREDIT, timeout=1)
    assert flags_of(ledger, d) == AF.CLOSED
    assert flags_of(ledger, c) == AF.NONE
    time.sleep(1.2)
    wait_for(lambda: flags_of(ledger, d) == AF.NONE)


def test_account_created_closed(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """An account may be created closed; it rejects transfers."""
    (a,) = make_accounts(1, flags=AF.CLOSED)
    (f,) = make_accounts(1)
    assert flags_of(ledger, a) == AF.CLOSED
    assert statuses(ledger.create_transfers([xfer(f, a, 1)])) == [S.CREDIT_ACCOUNT_ALREADY_CLOSED]


def test_close_account_recipe(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """Closing an account: balancing MAX then a closing pending of 0, per side."""
    (a,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (b,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    c, f, g = make_accounts(3)
    move(f, a, 20)
    move(a, f, 10)
    move(b, g, 30)
    move(g, b, 5)
    assert balance(a) == (0, 10, 0, 20)
    assert balance(b) == (0, 30, 0, 5)
    batch = [
        xfer(a, c, MAX, flags=TF.BALANCING_DEBIT | TF.LINKED),
        xfer(a, c, 0, flags=TF.CLOSING_DEBIT | TF.PENDING),
        xfer(c, b, MAX, flags=TF.BALANCING_CREDIT | TF.LINKED),
        xfer(c, b, 0, flags=TF.CLOSING_CREDIT | TF.PENDING),
    ]
    assert statuses(ledger.create_transfers(batch)) == [S.CREATED] * 4
    assert [t.amount for t in ledger.lookup_transfers([batch[0].id, batch[2].id])] == [10, 25]
    assert balance(a) == (0, 20, 0, 20)
    assert balance(b) == (0, 30, 0, 30)
    assert balance(c) == (0, 25, 0, 10)
    assert flags_of(ledger, a) == AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CLOSED
    assert flags_of(ledger, b) == AF.CREDITS_MUST_NOT_EXCEED_DEBITS | AF.CLOSED


def test_imported_accounts(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """Imported accounts: the batch-level import checks, then the account timestamp rules."""
    r = new_id()
    created = ledger.create_accounts([tb.Account(id=r, ledger=1, code=1)])[0]
    assert created.status == AS.CREATED
    ts_r = created.timestamp
    i1, i2 = new_id(), new_id()
    imp = AF.IMPORTED

    def acc(id_: int, timestamp: int, flags: int = imp) -> tb.Account:
        return tb.Account(id=id_, ledger=1, code=1, flags=flags, timestamp=timestamp)  # type: ignore[arg-type]

    first = ledger.create_accounts([acc(i1, ts_r + 1), acc(i2, 0, flags=0)])
    assert [x.status for x in first] == [AS.CREATED, AS.IMPORTED_EVENT_EXPECTED]
    assert first[0].timestamp == ts_r + 1
    hour_ahead = time.time_ns() + 3600 * 10**9
    for ts, expected in [
        (0, AS.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE),
        (hour_ahead, AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE),
        (ts_r + 1, AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS),
        (ts_r, AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS),
    ]:
        assert [x.status for x in ledger.create_accounts([acc(i2, ts)])] == [expected], ts
    ok = ledger.create_accounts([acc(i2, ts_r + 2)])[0]
    assert (ok.status, ok.timestamp) == (AS.CREATED, ts_r + 2)
    stored = ledger.lookup_accounts([i1, i2])
    assert [(x.timestamp, x.flags) for x in stored] == [(ts_r + 1, imp), (ts_r + 2, imp)]
    # Idempotency comes before the regress check; the timestamp is not compared.
    retry = ledger.create_accounts([acc(i1, ts_r + 50)])[0]
    assert (retry.status, retry.timestamp) == (AS.EXISTS, ts_r + 1)
    # The first event decides the batch mode.
    mixed = ledger.create_accounts([tb.Account(id=new_id(), ledger=1, code=1), acc(new_id(), ts_r + 3)])
    assert [x.status for x in mixed] == [AS.CREATED, AS.IMPORTED_EVENT_NOT_EXPECTED]


def test_imported_transfers(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
) -> None:
    """Imported transfer timestamp rules."""
    x, y = make_accounts(2)
    ts_x = ledger.lookup_accounts([x])[0].timestamp
    time.sleep(0.01)
    (z,) = make_accounts(1)
    ts_z = ledger.lookup_accounts([z])[0].timestamp
    assert ts_z > ts_x + 10
    imp = TF.IMPORTED
    t_ok = xfer(x, y, 1, flags=imp, timestamp=ts_x + 5)
    batch = [
        xfer(z, x, 1, flags=imp, timestamp=ts_x + 5),
        xfer(x, z, 1, flags=imp, timestamp=ts_x + 5),
        xfer(x, y, 1, flags=imp | TF.PENDING, timeout=1, timestamp=ts_x + 5),
        xfer(x, y, 1, flags=imp, timestamp=ts_z),
        t_ok,
        xfer(x, y, 1, flags=imp, timestamp=ts_x + 5),
        xfer(x, y, 1, flags=imp, timestamp=ts_x + 6, id=t_ok.id),
    ]
    results = ledger.create_transfers(batch)
    assert statuses(results) == [
        S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT,
        S.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        S.CREATED,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        S.EXISTS,
    ]
    assert results[4].timestamp == ts_x + 5
    assert results[6].timestamp == ts_x + 5
    stored = ledger.lookup_transfers([t_ok.id])[0]
    assert (stored.timestamp, stored.flags) == (ts_x + 5, imp)
    mixed = ledger.create_transfers([xfer(x, y, 1), xfer(x, y, 1, flags=imp, timestamp=ts_z + 1)])
    assert statuses(mixed) == [S.CREATED, S.IMPORTED_EVENT_NOT_EXPECTED]
    expected = ledger.create_transfers([xfer(x, y, 1, flags=imp, timestamp=ts_x + 5), xfer(x, y, 1)])
    assert statuses(expected) == [S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, S.IMPORTED_EVENT_EXPECTED]


@pytest.mark.parametrize("kind", ["account", "transfer"])
@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0, "IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE"),
        (2**63, "IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE"),
        (2**64 - 1, "IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE"),
        (2**63 - 1, "IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE"),
        (-1, "IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE"),
    ],
    ids=["zero", "2_63", "u64_max", "i63_max", "hour_ahead"],
)
def test_imported_timestamp_range(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    kind: str,
    timestamp: int,
    expected: str,
) -> None:
    """Imported timestamps outside [1, 2^63-1] are out of range; at or after the
    cluster's "now" they must not advance (-1 stands for now + 1 h)."""
    if timestamp == -1:
        timestamp = time.time_ns() + 3600 * 10**9
    if kind == "account":
        account = tb.Account(id=tb.id(), ledger=1, code=1, flags=AF.IMPORTED, timestamp=timestamp)
        assert [r.status for r in ledger.create_accounts([account])] == [AS.__members__[expected]]
    else:
        a, b = make_accounts(2)
        t = xfer(a, b, 1, flags=TF.IMPORTED, timestamp=timestamp)
        assert statuses(ledger.create_transfers([t])) == [S.__members__[expected]]


def test_closing_with_balancing_and_void_reopens(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
    balance: Callable[[int], Balance],
) -> None:
    """`PENDING|BALANCING_CREDIT|CLOSING_CREDIT` clamps, reserves and closes; voiding it releases the
    reservation and re-opens the account."""
    a, cr, g = make_accounts(3)
    move(cr, g, 5)  # cr: dpo 5, so a balancing credit clamps to 5
    t = xfer(a, cr, 10, flags=TF.PENDING | TF.BALANCING_CREDIT | TF.CLOSING_CREDIT)
    assert statuses(ledger.create_transfers([t])) == [S.CREATED]
    assert ledger.lookup_transfers([t.id])[0].amount == 5
    assert balance(cr) == (0, 5, 5, 0)
    assert flags_of(ledger, cr) == AF.CLOSED
    assert flags_of(ledger, a) == AF.NONE
    assert statuses(ledger.create_transfers([xfer(cr, g, 1)])) == [S.DEBIT_ACCOUNT_ALREADY_CLOSED]
    assert statuses(ledger.create_transfers([resolve(t.id, TF.VOID_PENDING_TRANSFER)])) == [S.CREATED]
    assert flags_of(ledger, cr) == AF.NONE
    assert balance(cr) == (0, 5, 0, 0)
