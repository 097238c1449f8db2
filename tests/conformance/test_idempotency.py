"""Transfer idempotency and burned ids: which failures burn an id, and the `exists*` order."""

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


def test_non_transient_failure_does_not_burn_the_id(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """`ledger_must_not_be_zero` is not transient; the fixed transfer reuses the id."""
    a, b = make_accounts(2)
    t1 = xfer(a, b, 1, ledger=0)
    assert statuses(ledger.create_transfers([t1])) == [S.LEDGER_MUST_NOT_BE_ZERO]
    assert statuses(ledger.create_transfers([xfer(a, b, 1, id=t1.id)])) == [S.CREATED]


def _transient_failure(
    status: str,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
) -> tb.Transfer:
    """A transfer that fails with `status`, one of the seven transient statuses."""
    a, b = make_accounts(2)
    if status == "debit_account_not_found":
        return xfer(new_id(), b, 1)
    if status == "credit_account_not_found":
        return xfer(a, new_id(), 1)
    if status == "pending_transfer_not_found":
        return xfer(0, 0, 0, pending_id=new_id(), flags=TF.POST_PENDING_TRANSFER, ledger=0, code=0)
    if status == "exceeds_credits":
        (lim,) = make_accounts(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
        return xfer(lim, b, 1)
    if status == "exceeds_debits":
        (lim,) = make_accounts(1, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
        return xfer(a, lim, 1)
    (closed,) = make_accounts(1, flags=AF.CLOSED)
    if status == "debit_account_already_closed":
        return xfer(closed, b, 1)
    assert status == "credit_account_already_closed"
    return xfer(a, closed, 1)


@pytest.mark.parametrize(
    "status",
    [
        "debit_account_not_found",
        "credit_account_not_found",
        "pending_transfer_not_found",
        "exceeds_credits",
        "exceeds_debits",
        "debit_account_already_closed",
        "credit_account_already_closed",
    ],
)
def test_transient_failure_burns_the_id(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    status: str,
) -> None:
    """After a transient failure the id gives `id_already_failed`, in the same
    batch and later, and is never found."""
    failing = _transient_failure(status, new_id, make_accounts, xfer)
    c, d = make_accounts(2)
    valid = xfer(c, d, 1, id=failing.id)
    results = ledger.create_transfers([failing, valid])
    assert statuses(results) == [S.__members__[status.upper()], S.ID_ALREADY_FAILED]
    assert statuses(ledger.create_transfers([valid])) == [S.ID_ALREADY_FAILED]
    assert statuses(ledger.create_transfers([failing])) == [S.ID_ALREADY_FAILED]
    assert ledger.lookup_transfers([failing.id]) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"code": 0}, S.CODE_MUST_NOT_BE_ZERO),
        ({"credit_account_id": -1}, S.ACCOUNTS_MUST_BE_DIFFERENT),
        ({"timeout": 5}, S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
        ({"pending_id": 3}, S.PENDING_ID_MUST_BE_ZERO),
        ({"flags": TF.CLOSING_CREDIT}, S.CLOSING_TRANSFER_MUST_BE_PENDING),
        ({"ledger": 2}, S.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS),
        ({"flags": TF.POST_PENDING_TRANSFER | TF.VOID_PENDING_TRANSFER}, S.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ],
    ids=["code", "same_accounts", "timeout", "pending_id", "closing", "ledger_mismatch", "post_and_void"],
)
def test_other_failures_do_not_burn_the_id(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    fields: dict[str, int],
    expected: tb.CreateTransferStatus,
) -> None:
    """Non-transient statuses leave the id free; the fixed transfer is created under it."""
    a, b = make_accounts(2)
    if fields.get("credit_account_id") == -1:
        fields = {"credit_account_id": a}
    bad = xfer(**{"debit_account_id": a, "credit_account_id": b, "amount": 1, **fields})
    assert statuses(ledger.create_transfers([bad])) == [expected]
    assert statuses(ledger.create_transfers([xfer(a, b, 1, id=bad.id)])) == [S.CREATED]


def test_transfer_idempotency_comparison_order(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    balance: Callable[[int], Balance],
) -> None:
    """Flags, pending_id, timeout, dr, cr, amount, user_data, ledger, code."""
    x1, x2, x3 = make_accounts(3)
    original = {"user_data_128": 1, "user_data_64": 2, "user_data_32": 3, "code": 4}
    t1 = xfer(x1, x2, 10, **original)
    created = ledger.create_transfers([t1])[0]
    assert created.status == S.CREATED

    def retry(**changes: int) -> tb.CreateTransferResult:
        fields: dict[str, int] = {"id": t1.id, "debit_account_id": x1, "credit_account_id": x2, "amount": 10}
        fields.update(original)
        fields.update(changes)
        return ledger.create_transfers([xfer(**fields)])[0]

    same = retry()
    assert same.status == S.EXISTS
    assert same.timestamp == created.timestamp
    assert retry(flags=TF.PENDING).status == S.EXISTS_WITH_DIFFERENT_FLAGS
    assert retry(pending_id=5).status == S.EXISTS_WITH_DIFFERENT_PENDING_ID
    assert retry(timeout=5, amount=11).status == S.EXISTS_WITH_DIFFERENT_TIMEOUT
    assert retry(debit_account_id=x3).status == S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    assert retry(credit_account_id=new_id()).status == S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    assert retry(amount=11, user_data_128=9).status == S.EXISTS_WITH_DIFFERENT_AMOUNT
    assert retry(user_data_128=9).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    assert retry(user_data_64=9).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_64
    assert retry(user_data_32=9).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_32
    assert retry(ledger=0, code=0).status == S.EXISTS_WITH_DIFFERENT_LEDGER
    assert retry(code=5).status == S.EXISTS_WITH_DIFFERENT_CODE
    assert retry(timestamp=1).status == S.TIMESTAMP_MUST_BE_ZERO
    assert balance(x1) == (0, 10, 0, 0)
    assert ledger.lookup_transfers([t1.id])[0].timestamp == created.timestamp


def test_exists_check_precedes_validation(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """Only reserved flags, id 0/MAX and batch rules come before idempotency."""
    a, b = make_accounts(2)
    t = xfer(a, b, 3)
    assert statuses(ledger.create_transfers([t])) == [S.CREATED]
    garbage = xfer(0, 0, 3, id=t.id, ledger=0, code=0)
    assert statuses(ledger.create_transfers([garbage])) == [S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID]
    same_accounts = xfer(a, a, 3, id=t.id)
    assert statuses(ledger.create_transfers([same_accounts])) == [S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID]
    reserved = xfer(a, b, 3, id=t.id, flags=1 << 10)
    assert statuses(ledger.create_transfers([reserved])) == [S.RESERVED_FLAG]


def test_exists_with_different_is_not_transient(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """`exists*` statuses do not burn anything; the original stays retrievable and retryable."""
    a, b = make_accounts(2)
    t = xfer(a, b, 3)
    first = ledger.create_transfers([t])[0]
    assert statuses(ledger.create_transfers([xfer(a, b, 4, id=t.id)])) == [S.EXISTS_WITH_DIFFERENT_AMOUNT]
    again = ledger.create_transfers([t])[0]
    assert (again.status, again.timestamp) == (S.EXISTS, first.timestamp)
    assert ledger.lookup_transfers([t.id])[0].amount == 3


def test_account_failures_never_burn_ids(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """`create_accounts` statuses never burn ids; a linked failure neither."""
    a = new_id()
    assert [r.status for r in ledger.create_accounts([tb.Account(id=a, ledger=1, code=0)])] == [
        tb.CreateAccountStatus.CODE_MUST_NOT_BE_ZERO
    ]
    assert [r.status for r in ledger.create_accounts([tb.Account(id=a, ledger=1, code=1)])] == [
        tb.CreateAccountStatus.CREATED
    ]
