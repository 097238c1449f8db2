"""`create_accounts`: dense results, timestamps, ordered validation, idempotency, linked chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

S = tb.CreateAccountStatus
F = tb.AccountFlags
MAX = tb.AMOUNT_MAX


def statuses(results: list[tb.CreateAccountResult]) -> list[tb.CreateAccountStatus]:
    return [r.status for r in results]


def test_dense_results_and_consecutive_timestamps(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """One result per event, consecutive timestamps, failures included."""
    a1, a2 = new_id(), new_id()
    results = ledger.create_accounts(
        [tb.Account(id=a1, ledger=1, code=1), tb.Account(id=a2, ledger=1, code=1), tb.Account(id=0)]
    )
    assert statuses(results) == [S.CREATED, S.CREATED, S.ID_MUST_NOT_BE_ZERO]
    assert int(S.CREATED) == 0xFFFFFFFF
    ts1, ts2, ts3 = (r.timestamp for r in results)
    assert ts2 - ts1 == 1
    assert ts3 - ts2 == 1
    assert ledger.lookup_accounts([a1])[0].timestamp == ts1
    again = ledger.create_accounts([tb.Account(id=a1, ledger=1, code=1)])
    assert statuses(again) == [S.EXISTS]
    assert again[0].timestamp == ts1


def test_timestamps_strictly_increase_across_requests(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """Strictly increasing across requests; accounts and transfers share one clock."""
    first = ledger.create_accounts([tb.Account(id=new_id(), ledger=1, code=1)])
    failed = ledger.create_transfers([tb.Transfer(id=0)])
    second = ledger.create_accounts([tb.Account(id=new_id(), ledger=1, code=1)])
    assert statuses(first) == [S.CREATED]
    assert [r.status for r in failed] == [tb.CreateTransferStatus.ID_MUST_NOT_BE_ZERO]
    assert first[0].timestamp < failed[0].timestamp < second[0].timestamp


def test_empty_batch_returns_empty(ledger: LedgerSync) -> None:
    """An empty batch returns `[]`."""
    assert ledger.create_accounts([]) == []


def test_validation_precedence_in_one_batch(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """Each event fixes the previous event's first failing check."""
    ids = [new_id() for _ in range(6)]
    events = [
        tb.Account(id=0, ledger=0, code=0, timestamp=5),
        tb.Account(id=0, ledger=0, code=0, flags=1 << 6),  # type: ignore[arg-type]
        tb.Account(id=0, ledger=0, code=0),
        tb.Account(id=MAX, ledger=0, code=0),
        tb.Account(
            id=ids[0],
            ledger=0,
            code=0,
            debits_pending=1,
            flags=F.DEBITS_MUST_NOT_EXCEED_CREDITS | F.CREDITS_MUST_NOT_EXCEED_DEBITS,
        ),
        tb.Account(id=ids[1], ledger=0, code=0, debits_pending=1, credits_posted=1),
        tb.Account(id=ids[2], ledger=0, code=0, credits_posted=1),
        tb.Account(id=ids[3], ledger=0, code=0),
        tb.Account(id=ids[4], ledger=1, code=0),
    ]
    assert statuses(ledger.create_accounts(events)) == [
        S.TIMESTAMP_MUST_BE_ZERO,
        S.RESERVED_FLAG,
        S.ID_MUST_NOT_BE_ZERO,
        S.ID_MUST_NOT_BE_INT_MAX,
        S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        S.DEBITS_PENDING_MUST_BE_ZERO,
        S.CREDITS_POSTED_MUST_BE_ZERO,
        S.LEDGER_MUST_NOT_BE_ZERO,
        S.CODE_MUST_NOT_BE_ZERO,
    ]
    assert ledger.lookup_accounts(ids) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"debits_pending": 1}, S.DEBITS_PENDING_MUST_BE_ZERO),
        ({"debits_posted": 1}, S.DEBITS_POSTED_MUST_BE_ZERO),
        ({"credits_pending": 1}, S.CREDITS_PENDING_MUST_BE_ZERO),
        ({"credits_posted": 1}, S.CREDITS_POSTED_MUST_BE_ZERO),
        ({"debits_posted": 1, "credits_pending": 1}, S.DEBITS_POSTED_MUST_BE_ZERO),
        ({"ledger": 0}, S.LEDGER_MUST_NOT_BE_ZERO),
        ({"code": 0}, S.CODE_MUST_NOT_BE_ZERO),
        (
            {"flags": F.DEBITS_MUST_NOT_EXCEED_CREDITS | F.CREDITS_MUST_NOT_EXCEED_DEBITS},
            S.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        ),
        ({"flags": 1 << 15}, S.RESERVED_FLAG),
        ({"timestamp": 1}, S.TIMESTAMP_MUST_BE_ZERO),
    ],
    ids=[
        "debits_pending",
        "debits_posted",
        "credits_pending",
        "credits_posted",
        "dpo_before_cp",
        "ledger",
        "code",
        "dc_and_cd",
        "padding_flag",
        "timestamp",
    ],
)
def test_single_validation_failure(
    ledger: LedgerSync, new_id: Callable[[], int], fields: dict[str, int], expected: tb.CreateAccountStatus
) -> None:
    """One invalid field gives its own status; nothing is created, no id burned."""
    account_id = new_id()
    base: dict[str, int] = {"ledger": 1, "code": 1}
    base.update(fields)
    results = ledger.create_accounts([tb.Account(id=account_id, **base)])  # type: ignore[arg-type]
    assert statuses(results) == [expected]
    assert ledger.lookup_accounts([account_id]) == []
    assert statuses(ledger.create_accounts([tb.Account(id=account_id, ledger=1, code=1)])) == [S.CREATED]


def test_idempotency_comparison_order(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """Flags, ud128, ud64, ud32, ledger, code in that order; balances are not compared."""
    a1 = new_id()
    original: dict[str, Any] = {
        "user_data_128": 7,
        "user_data_64": 8,
        "user_data_32": 9,
        "ledger": 1,
        "code": 1,
    }
    created = ledger.create_accounts([tb.Account(id=a1, **original)])
    assert statuses(created) == [S.CREATED]

    def retry(**changes: int) -> tb.CreateAccountResult:
        fields = dict(original)
        fields.update(changes)
        return ledger.create_accounts([tb.Account(id=a1, **fields)])[0]

    same = retry()
    assert same.status == S.EXISTS
    assert same.timestamp == created[0].timestamp
    assert retry(flags=F.HISTORY).status == S.EXISTS_WITH_DIFFERENT_FLAGS
    assert retry(user_data_128=70).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    assert retry(user_data_64=80).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_64
    assert retry(user_data_32=90).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_32
    assert retry(ledger=2).status == S.EXISTS_WITH_DIFFERENT_LEDGER
    assert retry(code=2).status == S.EXISTS_WITH_DIFFERENT_CODE
    assert retry(ledger=0, code=0).status == S.EXISTS_WITH_DIFFERENT_LEDGER
    assert retry(debits_posted=5, credits_pending=3).status == S.EXISTS
    flags = F.DEBITS_MUST_NOT_EXCEED_CREDITS | F.CREDITS_MUST_NOT_EXCEED_DEBITS
    assert retry(flags=flags).status == S.EXISTS_WITH_DIFFERENT_FLAGS
    assert retry(user_data_128=70, ledger=2).status == S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    stored = ledger.lookup_accounts([a1])[0]
    assert (stored.user_data_128, stored.user_data_64, stored.user_data_32) == (7, 8, 9)
    assert stored.timestamp == created[0].timestamp


def test_exists_check_precedes_validation(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """A retry with invalid balances/ledger is judged by idempotency first (before the field checks)."""
    a1 = new_id()
    assert statuses(ledger.create_accounts([tb.Account(id=a1, ledger=1, code=1)])) == [S.CREATED]
    retry = tb.Account(id=a1, ledger=1, code=1, debits_pending=1, debits_posted=2, credits_posted=3)
    assert statuses(ledger.create_accounts([retry])) == [S.EXISTS]
    # ...but the batch-level timestamp rule comes before idempotency.
    assert statuses(ledger.create_accounts([tb.Account(id=a1, ledger=1, code=1, timestamp=1)])) == [
        S.TIMESTAMP_MUST_BE_ZERO
    ]


def test_linked_account_chains(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """`exists` breaks a chain; rolled-back ids are reusable in the same batch."""
    a1, a2, a3, a4, a7 = (new_id() for _ in range(5))

    def acc(i: int, flags: int = 0, ledger_: int = 1, code: int = 1) -> tb.Account:
        return tb.Account(id=i, ledger=ledger_, code=code, flags=flags)  # type: ignore[arg-type]

    L = F.LINKED
    batch = [
        acc(a7),
        acc(a1, L),
        acc(a2, L),
        acc(a1, L),
        acc(a3),
        acc(a1),
        acc(a1, L, code=2),
        acc(a2),
        acc(a2),
        acc(a3, L),
        acc(a1, ledger_=2),
        acc(a3, L),
        acc(a4),
    ]
    assert statuses(ledger.create_accounts(batch)) == [
        S.CREATED,
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_FAILED,
        S.EXISTS,
        S.LINKED_EVENT_FAILED,
        S.CREATED,
        S.EXISTS_WITH_DIFFERENT_FLAGS,
        S.LINKED_EVENT_FAILED,
        S.CREATED,
        S.LINKED_EVENT_FAILED,
        S.EXISTS_WITH_DIFFERENT_LEDGER,
        S.CREATED,
        S.CREATED,
    ]
    found = ledger.lookup_accounts([a7, a1, a2, a3, a4])
    assert [a.id for a in found] == [a7, a1, a2, a3, a4]
    assert [a.flags for a in found] == [0, 0, 0, F.LINKED, 0]


def test_open_chain(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """A trailing `linked` event gets `linked_event_chain_open`."""
    a = [new_id() for _ in range(6)]
    L = F.LINKED
    batch = [
        tb.Account(id=a[0], ledger=1, code=1, flags=L),
        tb.Account(id=a[1], ledger=1, code=1, flags=L),
        tb.Account(id=a[2], ledger=1, code=1),
        tb.Account(id=a[3], ledger=1, code=1, flags=L),
        tb.Account(id=a[4], ledger=1, code=1, flags=L),
    ]
    assert statuses(ledger.create_accounts(batch)) == [
        S.CREATED,
        S.CREATED,
        S.CREATED,
        S.LINKED_EVENT_FAILED,
        S.LINKED_EVENT_CHAIN_OPEN,
    ]
    assert statuses(ledger.create_accounts([tb.Account(id=a[5], ledger=1, code=1, flags=L)])) == [
        S.LINKED_EVENT_CHAIN_OPEN
    ]
    assert [x.id for x in ledger.lookup_accounts(a)] == a[:3]


def test_linked_flag_is_stored_and_compared(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """The `linked` bit is stored; a committed chain retried gives [EXISTS, LEF]."""
    a1, a2 = new_id(), new_id()
    chain = [tb.Account(id=a1, ledger=1, code=1, flags=F.LINKED), tb.Account(id=a2, ledger=1, code=1)]
    first = ledger.create_accounts(chain)
    assert statuses(first) == [S.CREATED, S.CREATED]
    assert first[1].timestamp - first[0].timestamp == 1
    assert ledger.lookup_accounts([a1])[0].flags == F.LINKED
    retry = ledger.create_accounts(chain)
    assert statuses(retry) == [S.EXISTS, S.LINKED_EVENT_FAILED]
    assert retry[0].timestamp == first[0].timestamp
    assert statuses(ledger.create_accounts([tb.Account(id=a1, ledger=1, code=1)])) == [
        S.EXISTS_WITH_DIFFERENT_FLAGS
    ]
    assert statuses(ledger.create_accounts([tb.Account(id=a2, ledger=1, code=1)])) == [S.EXISTS]


def test_rolled_back_chain_results_have_consecutive_timestamps(
    ledger: LedgerSync, new_id: Callable[[], int]
) -> None:
    """A failed chain's events still each consume a timestamp."""
    a1 = new_id()
    results = ledger.create_accounts(
        [tb.Account(id=a1, ledger=1, code=1, flags=F.LINKED), tb.Account(id=new_id(), ledger=0, code=1)]
    )
    assert statuses(results) == [S.LINKED_EVENT_FAILED, S.LEDGER_MUST_NOT_BE_ZERO]
    assert results[1].timestamp - results[0].timestamp == 1
    assert ledger.lookup_accounts([a1]) == []


def test_account_is_stored_as_given(ledger: LedgerSync, new_id: Callable[[], int]) -> None:
    """Zero balances, the given fields and flags, the cluster timestamp."""
    a1 = new_id()
    flags = F.HISTORY | F.DEBITS_MUST_NOT_EXCEED_CREDITS
    account = tb.Account(
        id=a1,
        user_data_128=2**128 - 2,
        user_data_64=2**64 - 1,
        user_data_32=2**32 - 1,
        ledger=2**32 - 1,
        code=2**16 - 1,
        flags=flags,
    )
    result = ledger.create_accounts([account])[0]
    assert result.status == S.CREATED
    stored = ledger.lookup_accounts([a1])[0]
    assert stored == tb.Account(
        id=a1,
        user_data_128=2**128 - 2,
        user_data_64=2**64 - 1,
        user_data_32=2**32 - 1,
        ledger=2**32 - 1,
        code=2**16 - 1,
        flags=flags,
        timestamp=result.timestamp,
    )


def test_account_and_transfer_ids_are_separate_namespaces(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], move: Callable[..., int]
) -> None:
    """A transfer may carry the id of an existing account."""
    a, b = make_accounts(2)
    assert move(a, b, 1, id=a) == a
    assert ledger.lookup_transfers([a])[0].debit_account_id == a
    assert ledger.lookup_accounts([a])[0].id == a
