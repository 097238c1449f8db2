"""Fixtures of the embedded ledger engine's tests: the pure engine over in-memory dicts with a fake clock
(`engine`), fresh ids (`nid`) and the transfer builders (`xfer`, `resolve`).

Test modules cannot import each other or this file at run time (pytest runs with
`--import-mode=importlib`), so what they share is fixtures; they import the types below only under
`TYPE_CHECKING`, for their annotations. Expected statuses are TigerBeetle 0.17.9's (see docs/ledger.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import tigerbeetle as tb

from pm_shared.ledger.embedded.accounts import create_accounts
from pm_shared.ledger.embedded.batch import ImportContext
from pm_shared.ledger.embedded.engine import create_transfers
from pm_shared.ledger.embedded.model import AccountRow, Changes, TransferRow

NewId = Callable[[], int]
"""`nid()`: a fresh id (account and transfer ids alike), counting up from 1000."""

MakeTransfer = Callable[..., tb.Transfer]
"""`xfer(dr, cr, amount=0, **fields)` and `resolve(pending_id, flags, amount=0, **fields)`."""

_ids = itertools.count(1000)


def _nid() -> int:
    return next(_ids)


class Engine:
    """The pure engine over in-memory dicts, with a fake clock."""

    def __init__(self) -> None:
        self.accounts: dict[int, AccountRow] = {}
        self.transfers: dict[int, TransferRow] = {}
        self.burned: set[int] = set()
        self.last_ts = 1_000_000

    def _first_ts(self) -> int:
        return self.last_ts + 1

    def accounts_(self, events: list[tb.Account], imports: ImportContext | None = None) -> list[Any]:
        results, changes = create_accounts(events, self.accounts, self._first_ts(), imports)
        self.last_ts = max(self.last_ts, changes.last_timestamp)
        return [tb.CreateAccountStatus(s) for _, s in results]

    def transfers_full(
        self, events: list[tb.Transfer], imports: ImportContext | None = None
    ) -> tuple[list[tuple[int, int]], Changes]:
        results, changes = create_transfers(
            events, self.accounts, self.transfers, self.burned, self._first_ts(), imports
        )
        self.last_ts = max(self.last_ts, changes.last_timestamp)
        return results, changes

    def transfers_(self, events: list[tb.Transfer], imports: ImportContext | None = None) -> list[Any]:
        return [tb.CreateTransferStatus(s) for _, s in self.transfers_full(events, imports)[0]]

    def open(self, n: int = 1, **fields: Any) -> list[int]:
        fields.setdefault("ledger", 1)
        fields.setdefault("code", 1)
        ids = [_nid() for _ in range(n)]
        assert (
            self.accounts_([tb.Account(id=i, **fields) for i in ids]) == [tb.CreateAccountStatus.CREATED] * n
        )
        return ids

    def bal(self, account_id: int) -> tuple[int, int, int, int]:
        a = self.accounts[account_id]
        return (a.dp, a.dpo, a.cp, a.cpo)


def _xfer(dr: int, cr: int, amount: int = 0, **fields: Any) -> tb.Transfer:
    fields.setdefault("id", _nid())
    fields.setdefault("ledger", 1)
    fields.setdefault("code", 1)
    return tb.Transfer(debit_account_id=dr, credit_account_id=cr, amount=amount, **fields)


def _resolve(pending_id: int, flags: int, amount: int = 0, **fields: Any) -> tb.Transfer:
    fields.setdefault("id", _nid())
    return tb.Transfer(pending_id=pending_id, flags=tb.TransferFlags(flags), amount=amount, **fields)


@pytest.fixture
def engine() -> Engine:
    """A fresh in-memory engine: no accounts, no transfers, its clock at 1,000,000 ns."""
    return Engine()


@pytest.fixture
def nid() -> NewId:
    """Fresh ids from one counter shared by every test here (so never reused within a session)."""
    return _nid


@pytest.fixture
def xfer() -> MakeTransfer:
    """`xfer(dr, cr, amount=0, **fields)`: a transfer with a fresh id, on ledger 1 with code 1 by default."""
    return _xfer


@pytest.fixture
def resolve() -> MakeTransfer:
    """`resolve(pending_id, flags, amount=0, **fields)`: posts or voids `pending_id`, with a fresh id."""
    return _resolve
