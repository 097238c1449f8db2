"""create_accounts over preloaded accounts, without I/O (TigerBeetle 0.17.9's checks, in its order)."""

from __future__ import annotations

from collections.abc import Sequence

import tigerbeetle as tb

from pm_shared.ledger.embedded.batch import ACCOUNT_CODES, AS, CREATED, Applier, ImportContext, run_batch
from pm_shared.ledger.embedded.model import (
    A_CREDITS_MUST_NOT_EXCEED_DEBITS,
    A_DEBITS_MUST_NOT_EXCEED_CREDITS,
    A_IMPORTED,
    A_KNOWN,
    U128_MAX,
    AccountRow,
    Changes,
)


class AccountBatch(Applier):
    """create_accounts over `accounts` (every existing account with one of the batch's ids)."""

    exists_code = int(AS.EXISTS)

    def __init__(
        self,
        events: Sequence[tb.Account],
        accounts: dict[int, AccountRow],
        changes: Changes,
        imports: ImportContext | None = None,
    ) -> None:
        self.events = events
        self.accounts = accounts
        self.changes = changes
        self.imports = imports or ImportContext()
        self._mark = 0
        self._max_ts_mark = 0

    def run(self, first_ts: int) -> list[tuple[int, int]]:
        events = self.events
        flags = [int(e.flags) & 0xFFFF for e in events]
        timestamps = [e.timestamp for e in events]
        return run_batch(flags, timestamps, first_ts, A_IMPORTED, ACCOUNT_CODES, self)

    def scope_open(self) -> None:
        self._mark = len(self.changes.accounts)
        self._max_ts_mark = self.imports.max_account_timestamp

    def scope_discard(self) -> None:
        created = self.changes.accounts
        for row in created[self._mark :]:
            del self.accounts[row.id]
        del created[self._mark :]
        self.imports.max_account_timestamp = self._max_ts_mark

    def scope_persist(self) -> None:
        pass

    def apply(self, index: int, ts: int, imported: bool) -> tuple[int, int]:
        a = self.events[index]
        flags = int(a.flags) & 0xFFFF
        # reserved_field cannot be sent from Python, so the first check is the flags.
        if flags & ~A_KNOWN:
            return AS.RESERVED_FLAG, ts
        if a.id == 0:
            return AS.ID_MUST_NOT_BE_ZERO, ts
        if a.id == U128_MAX:
            return AS.ID_MUST_NOT_BE_INT_MAX, ts
        existing = self.accounts.get(a.id)
        if existing is not None:
            # The result of an existing account carries that account's timestamp.
            return _exists_status(a, flags, existing), existing.timestamp
        status = _new_account_status(a, flags)
        if status is not None:
            return status, ts
        imports = self.imports
        # An imported account follows every account (imported or not), never on a transfer's timestamp.
        if imported and (ts <= imports.max_account_timestamp or ts in imports.transfer_timestamps):
            return AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS, ts
        row = AccountRow(
            a.id, 0, 0, 0, 0, a.user_data_128, a.user_data_64, a.user_data_32, a.ledger, a.code, flags, ts
        )
        self.accounts[a.id] = row
        self.changes.accounts.append(row)
        if ts > imports.max_account_timestamp:
            imports.max_account_timestamp = ts
        return CREATED, ts


def _exists_status(a: tb.Account, flags: int, e: AccountRow) -> int:
    """An account with this id exists: the first difference wins (flags compare every bit, closed too)."""
    if flags != e.flags:
        return AS.EXISTS_WITH_DIFFERENT_FLAGS
    if a.user_data_128 != e.ud128:
        return AS.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if a.user_data_64 != e.ud64:
        return AS.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if a.user_data_32 != e.ud32:
        return AS.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if a.ledger != e.ledger:
        return AS.EXISTS_WITH_DIFFERENT_LEDGER
    if a.code != e.code:
        return AS.EXISTS_WITH_DIFFERENT_CODE
    return AS.EXISTS


def _new_account_status(a: tb.Account, flags: int) -> int | None:
    """The fields of a new account; None when it may be created."""
    if flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS and flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS:
        return AS.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if a.debits_pending:
        return AS.DEBITS_PENDING_MUST_BE_ZERO
    if a.debits_posted:
        return AS.DEBITS_POSTED_MUST_BE_ZERO
    if a.credits_pending:
        return AS.CREDITS_PENDING_MUST_BE_ZERO
    if a.credits_posted:
        return AS.CREDITS_POSTED_MUST_BE_ZERO
    if a.ledger == 0:
        return AS.LEDGER_MUST_NOT_BE_ZERO
    if a.code == 0:
        return AS.CODE_MUST_NOT_BE_ZERO
    return None


def create_accounts(
    events: Sequence[tb.Account],
    accounts: dict[int, AccountRow],
    first_ts: int,
    imports: ImportContext | None = None,
) -> tuple[list[tuple[int, int]], Changes]:
    """Apply one create_accounts request; `accounts` holds the existing accounts with the batch's ids."""
    changes = Changes()
    results = AccountBatch(events, accounts, changes, imports).run(first_ts)
    changes.last_timestamp = first_ts + len(events) - 1 if events else first_ts - 1
    return results, changes
