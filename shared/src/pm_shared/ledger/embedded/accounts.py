"""create_accounts (§5) over preloaded accounts, without I/O."""

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
    """create_accounts (§5) over `accounts` (every existing account with one of the batch's ids)."""

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
        # §5 rows 1-4 (reserved_field cannot be sent from Python).
        if flags & ~A_KNOWN:
            return 5, ts
        if a.id == 0:
            return 6, ts
        if a.id == U128_MAX:
            return 7, ts
        e = self.accounts.get(a.id)
        if e is not None:
            # §5 row 5: flags compare all bits, including linked and the current closed bit.
            if flags != e.flags:
                return 15, ts
            if a.user_data_128 != e.ud128:
                return 16, ts
            if a.user_data_64 != e.ud64:
                return 17, ts
            if a.user_data_32 != e.ud32:
                return 18, ts
            if a.ledger != e.ledger:
                return 19, ts
            if a.code != e.code:
                return 20, ts
            return 21, e.timestamp
        if flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS and flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS:
            return 8, ts
        if a.debits_pending:
            return 9, ts
        if a.debits_posted:
            return 10, ts
        if a.credits_pending:
            return 11, ts
        if a.credits_posted:
            return 12, ts
        if a.ledger == 0:
            return 13, ts
        if a.code == 0:
            return 14, ts
        imports = self.imports
        # §4.11: after every account (imported or not), never on a transfer's timestamp.
        if imported and (ts <= imports.max_account_timestamp or ts in imports.transfer_timestamps):
            return 26, ts
        row = AccountRow(
            a.id, 0, 0, 0, 0, a.user_data_128, a.user_data_64, a.user_data_32, a.ledger, a.code, flags, ts
        )
        self.accounts[a.id] = row
        self.changes.accounts.append(row)
        if ts > imports.max_account_timestamp:
            imports.max_account_timestamp = ts
        return CREATED, ts


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
