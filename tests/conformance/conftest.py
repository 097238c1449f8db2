"""Fixtures of the ledger conformance suite.

Every test runs once per backend: the embedded PostgreSQL engine (always) and a real TigerBeetle 0.17.9
(only when `PM_TB_ADDRESSES` is set). The expected behaviour is TigerBeetle 0.17.9's, as docs/ledger.md
describes it; each test says which rule it checks.

Test modules cannot import each other (pytest runs with `--import-mode=importlib`), so the small helpers
they share are fixtures here. The ledger is shared by the whole session: tests use fresh ids (`tb.id()`),
and queries filter on fresh `user_data_128` values or on timestamp ranges of their own objects.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

Balance = tuple[int, int, int, int]
"""`(debits_pending, debits_posted, credits_pending, credits_posted)`, as the tests write balances."""

TB_SKIP_REASON = "PM_TB_ADDRESSES is not set: no TigerBeetle server to run the conformance suite against"


@pytest.fixture(scope="session", params=["embedded", "tigerbeetle"])
def ledger(request: pytest.FixtureRequest) -> Iterator[LedgerSync]:
    """One ledger per backend for the session, closed at its end."""
    if request.param == "embedded":
        database_url: str = request.getfixturevalue("database_url")
        url = "embedded+" + database_url
    else:
        addresses = os.environ.get("PM_TB_ADDRESSES", "")
        if not addresses:
            pytest.skip(TB_SKIP_REASON)
        url = f"tigerbeetle://0@{addresses}"
    # Imported here so that a missing backend fails the tests that need it, not the collection.
    from pm_shared.ledger import open_ledger_sync

    opened: LedgerSync = open_ledger_sync(url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def new_id() -> Callable[[], int]:
    """A factory of fresh, never used ids (account and transfer ids alike)."""
    return tb.id


@pytest.fixture
def make_accounts(ledger: LedgerSync) -> Callable[..., list[int]]:
    """`make_accounts(n=1, *, flags=0, ledger=1, code=1, user_data_*=0)`: create n fresh accounts.

    Asserts that every one was `CREATED` and returns their ids.
    """

    def make(n: int = 1, **fields: Any) -> list[int]:
        fields.setdefault("ledger", 1)
        fields.setdefault("code", 1)
        ids = [tb.id() for _ in range(n)]
        results = ledger.create_accounts([tb.Account(id=i, **fields) for i in ids])
        assert [r.status for r in results] == [tb.CreateAccountStatus.CREATED] * n
        return ids

    return make


@pytest.fixture
def xfer() -> Callable[..., tb.Transfer]:
    """`xfer(dr, cr, amount, **fields)`: a `Transfer` with a fresh id and `ledger=1, code=1` by default."""

    def build(debit_account_id: int, credit_account_id: int, amount: int = 0, **fields: Any) -> tb.Transfer:
        fields.setdefault("id", tb.id())
        fields.setdefault("ledger", 1)
        fields.setdefault("code", 1)
        return tb.Transfer(
            debit_account_id=debit_account_id, credit_account_id=credit_account_id, amount=amount, **fields
        )

    return build


@pytest.fixture
def move(ledger: LedgerSync, xfer: Callable[..., tb.Transfer]) -> Callable[..., int]:
    """`move(dr, cr, amount, **fields)`: submit one transfer, assert `CREATED`, return its id."""

    def submit(debit_account_id: int, credit_account_id: int, amount: int, **fields: Any) -> int:
        t = xfer(debit_account_id, credit_account_id, amount, **fields)
        results = ledger.create_transfers([t])
        assert [r.status for r in results] == [tb.CreateTransferStatus.CREATED]
        return int(t.id)

    return submit


@pytest.fixture
def balance(ledger: LedgerSync) -> Callable[[int], Balance]:
    """`balance(account_id)`: the account's current `(dp, dpo, cp, cpo)`."""

    def read(account_id: int) -> Balance:
        found = ledger.lookup_accounts([account_id])
        assert len(found) == 1, f"account {account_id} not found"
        a = found[0]
        return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)

    return read


@pytest.fixture
def wait_for() -> Callable[[Callable[[], bool]], None]:
    """`wait_for(check)`: poll `check` for up to 5 s (pending expiry is best-effort)."""

    def wait(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5.0
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("condition still false after 5 s")
            time.sleep(0.1)

    return wait
