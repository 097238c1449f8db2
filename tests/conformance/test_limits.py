"""Client-side limits: batch size (8189 events), query `limit` (≤ 8189) and integer field ranges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import BATCH_MAX, LedgerSync

S = tb.CreateTransferStatus
FF = tb.AccountFilterFlags
QF = tb.QueryFilterFlags


def account_filter(account_id: int, limit: int) -> tb.AccountFilter:
    return tb.AccountFilter(
        account_id=account_id,
        user_data_128=0,
        user_data_64=0,
        user_data_32=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=limit,
        flags=FF.DEBITS | FF.CREDITS,
    )


def query_filter(user_data_128: int, limit: int) -> tb.QueryFilter:
    return tb.QueryFilter(
        user_data_128=user_data_128,
        user_data_64=0,
        user_data_32=0,
        ledger=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=limit,
        flags=QF.NONE,
    )


def test_batch_max_is_8189() -> None:
    """The production per-request maximum."""
    assert BATCH_MAX == 8189


def test_create_transfers_batch_limit(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """8190 transfers raise `TooMuchDataError` and commit nothing; 8189 are all created."""
    a, b = make_accounts(2)
    too_many = [xfer(a, b, 1) for _ in range(BATCH_MAX + 1)]
    with pytest.raises(tb.TooMuchDataError):
        ledger.create_transfers(too_many)
    assert ledger.lookup_transfers([t.id for t in too_many[:BATCH_MAX]]) == []
    assert ledger.lookup_accounts([a])[0].debits_posted == 0
    results = ledger.create_transfers(too_many[:BATCH_MAX])
    assert len(results) == BATCH_MAX
    assert all(r.status == S.CREATED for r in results)
    assert results[-1].timestamp - results[0].timestamp == BATCH_MAX - 1
    assert ledger.lookup_accounts([a])[0].debits_posted == BATCH_MAX


def test_create_accounts_batch_limit(ledger: LedgerSync) -> None:
    """8190 accounts raise `TooMuchDataError` and commit nothing."""
    accounts = [tb.Account(id=tb.id(), ledger=1, code=1) for _ in range(BATCH_MAX + 1)]
    with pytest.raises(tb.TooMuchDataError):
        ledger.create_accounts(accounts)
    assert ledger.lookup_accounts([accounts[0].id, accounts[-1].id]) == []


@pytest.mark.parametrize("operation", ["lookup_accounts", "lookup_transfers"])
def test_lookup_batch_limit(ledger: LedgerSync, operation: str) -> None:
    """A lookup takes up to 8189 ids; 8190 raise `TooMuchDataError`."""
    lookup: Callable[[list[int]], list[Any]] = getattr(ledger, operation)
    ids = [tb.id() for _ in range(BATCH_MAX + 1)]
    with pytest.raises(tb.TooMuchDataError):
        lookup(ids)
    assert lookup(ids[:BATCH_MAX]) == []


@pytest.mark.parametrize(
    "operation", ["get_account_transfers", "get_account_balances", "query_accounts", "query_transfers"]
)
def test_query_limit(ledger: LedgerSync, make_accounts: Callable[..., list[int]], operation: str) -> None:
    """A `limit` above 8189 raises `TooMuchDataError`; 8189 itself is accepted."""
    (a,) = make_accounts(1, flags=tb.AccountFlags.HISTORY)
    query: Callable[[Any], list[Any]] = getattr(ledger, operation)

    def flt(limit: int) -> Any:
        return account_filter(a, limit) if operation.startswith("get_") else query_filter(tb.id(), limit)

    for limit in (BATCH_MAX + 1, 10_000):
        with pytest.raises(tb.TooMuchDataError):
            query(flt(limit))
    assert query(flt(BATCH_MAX)) == []


@pytest.mark.parametrize(
    ("fields", "build"),
    [
        ({"amount": -1}, "transfer"),
        ({"amount": 2**128}, "transfer"),
        ({"id": -1}, "transfer"),
        ({"user_data_64": 2**64}, "transfer"),
        ({"user_data_32": 2**32}, "transfer"),
        ({"timeout": 2**32}, "transfer"),
        ({"ledger": 2**32}, "transfer"),
        ({"code": 2**16}, "transfer"),
        ({"timestamp": 2**64}, "transfer"),
        ({"id": 2**128}, "account"),
        ({"user_data_128": -1}, "account"),
        ({"code": -1}, "account"),
        ({"debits_posted": 2**128}, "account"),
    ],
    ids=[
        "transfer_amount_negative",
        "transfer_amount_2_128",
        "transfer_id_negative",
        "transfer_ud64",
        "transfer_ud32",
        "transfer_timeout",
        "transfer_ledger",
        "transfer_code",
        "transfer_timestamp",
        "account_id",
        "account_ud128_negative",
        "account_code_negative",
        "account_debits_posted",
    ],
)
def test_integer_overflow(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    fields: dict[str, int],
    build: str,
) -> None:
    """A negative or too wide field raises `IntegerOverflowError`, and nothing is created."""
    a, b = make_accounts(2)
    if build == "transfer":
        good = xfer(a, b, 1)
        bad = xfer(**{"debit_account_id": a, "credit_account_id": b, "amount": 1, **fields})
        with pytest.raises(tb.IntegerOverflowError):
            ledger.create_transfers([good, bad])
        assert ledger.lookup_transfers([good.id]) == []
    else:
        good_account = tb.Account(id=tb.id(), ledger=1, code=1)
        values: dict[str, int] = {"id": tb.id(), "ledger": 1, "code": 1}
        values.update(fields)
        with pytest.raises(tb.IntegerOverflowError):
            ledger.create_accounts([good_account, tb.Account(**values)])  # type: ignore[arg-type]
        assert ledger.lookup_accounts([good_account.id]) == []
    assert ledger.lookup_accounts([a])[0].debits_posted == 0


@pytest.mark.parametrize(
    "operation", ["get_account_transfers", "get_account_balances", "query_accounts", "query_transfers"]
)
@pytest.mark.parametrize("field", ["limit", "negative"])
def test_integer_overflow_in_filters(ledger: LedgerSync, operation: str, field: str) -> None:
    """Filter fields are range-checked too (a limit of 2^32, a negative id or user_data)."""
    query: Callable[[Any], list[Any]] = getattr(ledger, operation)
    flt: Any
    if operation.startswith("get_"):
        flt = account_filter(tb.id(), 2**32) if field == "limit" else account_filter(-1, 10)
    else:
        flt = query_filter(tb.id(), 2**32) if field == "limit" else query_filter(-1, 10)
    with pytest.raises(tb.IntegerOverflowError):
        query(flt)
