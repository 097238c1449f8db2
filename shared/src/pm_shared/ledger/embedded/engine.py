"""The ledger state machine for transfers: TigerBeetle 0.17.9's create_transfers and expiry, no I/O.

The caller loads everything a request can touch (accounts, transfers with the batch's ids, pending
transfers referenced by posts and voids, burned ids), runs one request here, and persists the
returned `Changes`. Rows handed in are mutated in place; on a failed persist the caller must drop them.

Each event is checked in TigerBeetle's order and the first failing check is its status; the steps
below keep that order (see docs/ledger.md for the semantics they reproduce).
"""

from __future__ import annotations

from collections.abc import Sequence

import tigerbeetle as tb

from pm_shared.ledger.embedded.batch import CREATED, TRANSFER_CODES, TS, Applier, ImportContext, run_batch
from pm_shared.ledger.embedded.model import (
    A_CLOSED,
    A_HISTORY,
    NS_PER_S,
    P_EXPIRED,
    P_NONE,
    P_PENDING,
    P_POSTED,
    P_VOIDED,
    T_BALANCING_CREDIT,
    T_BALANCING_DEBIT,
    T_CLOSING_CREDIT,
    T_CLOSING_DEBIT,
    T_IMPORTED,
    T_KNOWN,
    T_PENDING,
    T_POST,
    T_VOID,
    U128_MAX,
    AccountRow,
    Changes,
    TransferRow,
)
from pm_shared.ledger.embedded.transfer_rules import (
    balancing_amount,
    closed_status,
    exists_status,
    limit_status,
    new_transfer_status,
    overflow_status,
    pending_match_status,
    pending_state_status,
    resolution_fields_status,
    resolved_amount,
)

# The transient statuses, which burn the transfer id: a retry with the same id fails ID_ALREADY_FAILED.
TRANSIENT: frozenset[int] = frozenset(
    {
        TS.DEBIT_ACCOUNT_NOT_FOUND,
        TS.CREDIT_ACCOUNT_NOT_FOUND,
        TS.PENDING_TRANSFER_NOT_FOUND,
        TS.EXCEEDS_CREDITS,
        TS.EXCEEDS_DEBITS,
        TS.DEBIT_ACCOUNT_ALREADY_CLOSED,
        TS.CREDIT_ACCOUNT_ALREADY_CLOSED,
    }
)


_BALANCING = T_BALANCING_DEBIT | T_BALANCING_CREDIT

_UndoEntry = tuple[AccountRow, int, int, int, int, int] | tuple[TransferRow, int]


class TransferBatch(Applier):
    """create_transfers over preloaded state.

    `accounts` must hold every existing account the batch names (directly, or through the pending
    transfers it posts or voids); `transfers` every existing transfer whose id is one of the batch's
    ids or pending ids, plus the pending transfers of existing posts/voids among them.
    """

    exists_code = int(TS.EXISTS)

    def __init__(
        self,
        events: Sequence[tb.Transfer],
        accounts: dict[int, AccountRow],
        transfers: dict[int, TransferRow],
        burned: set[int],
        changes: Changes,
        imports: ImportContext | None = None,
    ) -> None:
        self.events = events
        self.accounts = accounts
        self.transfers = transfers
        self.burned = burned
        self.changes = changes
        self.imports = imports or ImportContext()
        self._in_chain = False
        self._undo: list[_UndoEntry] = []
        self._mark = 0
        self._max_ts_mark = 0

    def run(self, first_ts: int) -> list[tuple[int, int]]:
        events = self.events
        flags = [int(e.flags) & 0xFFFF for e in events]
        timestamps = [e.timestamp for e in events]
        return run_batch(flags, timestamps, first_ts, T_IMPORTED, TRANSFER_CODES, self)

    # Linked-chain scopes: an undo log of account balances/flags and pending statuses.

    def scope_open(self) -> None:
        self._in_chain = True
        self._undo.clear()
        self._mark = len(self.changes.transfers)
        self._max_ts_mark = self.imports.max_transfer_timestamp

    def scope_discard(self) -> None:
        for entry in reversed(self._undo):
            if len(entry) == 6:
                acct, dp, dpo, cp, cpo, flags = entry
                acct.dp, acct.dpo, acct.cp, acct.cpo, acct.flags = dp, dpo, cp, cpo, flags
            else:
                pending, status = entry
                pending.status = status
        self._undo.clear()
        created = self.changes.transfers
        for row in created[self._mark :]:
            del self.transfers[row.id]
        del created[self._mark :]
        self.imports.max_transfer_timestamp = self._max_ts_mark
        self._in_chain = False

    def scope_persist(self) -> None:
        self._undo.clear()
        self._in_chain = False

    def failed(self, index: int, status: int) -> None:
        if status in TRANSIENT:
            tid = self.events[index].id
            self.burned.add(tid)
            self.changes.burned.append(tid)

    # One event: the checks every transfer shares, then a new transfer or a post/void.

    def apply(self, index: int, ts: int, imported: bool) -> tuple[int, int]:
        t = self.events[index]
        flags = int(t.flags) & 0xFFFF
        tid = t.id
        if flags & ~T_KNOWN:
            return TS.RESERVED_FLAG, ts
        if tid == 0:
            return TS.ID_MUST_NOT_BE_ZERO, ts
        if tid == U128_MAX:
            return TS.ID_MUST_NOT_BE_INT_MAX, ts
        existing = self.transfers.get(tid)
        if existing is not None:
            # The result of an existing transfer carries that transfer's timestamp.
            return exists_status(t, flags, existing, self.transfers), existing.timestamp
        if tid in self.burned:
            return TS.ID_ALREADY_FAILED, ts
        if flags & (T_POST | T_VOID):
            return self._post_or_void(t, flags, ts, imported), ts
        return self._create(t, flags, ts, imported), ts

    def _create(self, t: tb.Transfer, flags: int, ts: int, imported: bool) -> int:
        """A new single-phase or pending transfer: its status, booked when it is CREATED."""
        status = new_transfer_status(t, flags)
        if status is not None:
            return status
        dr = self.accounts.get(t.debit_account_id)
        if dr is None:
            return TS.DEBIT_ACCOUNT_NOT_FOUND
        cr = self.accounts.get(t.credit_account_id)
        if cr is None:
            return TS.CREDIT_ACCOUNT_NOT_FOUND
        if dr.ledger != cr.ledger:
            return TS.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if t.ledger != dr.ledger:
            return TS.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if imported:
            status = self._imported_status(t, ts, dr, cr)
            if status is not None:
                return status
        status = closed_status(dr, cr)
        if status is not None:
            return status
        amount = balancing_amount(t.amount, flags, dr, cr) if flags & _BALANCING else t.amount
        status = overflow_status(amount, flags & T_PENDING, t.timeout, ts, dr, cr)
        if status is None:
            status = limit_status(amount, dr, cr)
        if status is not None:
            return status
        self._book(t, flags, ts, amount, dr, cr)
        return CREATED

    def _imported_status(self, t: tb.Transfer, ts: int, dr: AccountRow, cr: AccountRow) -> int | None:
        if self._regresses(ts):
            return TS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
        if ts <= dr.timestamp:
            return TS.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT
        if ts <= cr.timestamp:
            return TS.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT
        if t.timeout != 0:
            return TS.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO
        return None

    def _regresses(self, ts: int) -> bool:
        """An imported timestamp must follow every transfer and fall on no account's timestamp."""
        imports = self.imports
        return ts <= imports.max_transfer_timestamp or ts in imports.account_timestamps

    def _book(self, t: tb.Transfer, flags: int, ts: int, amount: int, dr: AccountRow, cr: AccountRow) -> None:
        """Apply a new transfer: reserve (pending, maybe closing) or post the amount, and record it."""
        self._touch(dr)
        self._touch(cr)
        pending = flags & T_PENDING
        if pending:
            dr.dp += amount
            cr.cp += amount
            if flags & T_CLOSING_DEBIT:
                dr.flags |= A_CLOSED
            if flags & T_CLOSING_CREDIT:
                cr.flags |= A_CLOSED
        else:
            dr.dpo += amount
            cr.cpo += amount
        timeout = t.timeout
        self._insert(
            # Positional: keyword arguments make a slots dataclass markedly slower to build.
            TransferRow(
                t.id,
                dr.id,
                cr.id,
                amount,
                0,  # pending_id
                t.user_data_128,
                t.user_data_64,
                t.user_data_32,
                timeout,
                t.ledger,
                t.code,
                flags,
                ts,
                P_PENDING if pending else P_NONE,  # status
                ts + timeout * NS_PER_S if pending and timeout else 0,  # expires_at
                (dr.dp, dr.dpo, dr.cp, dr.cpo) if dr.flags & A_HISTORY else None,  # dr_snapshot
                (cr.dp, cr.dpo, cr.cp, cr.cpo) if cr.flags & A_HISTORY else None,  # cr_snapshot
            )
        )

    def _post_or_void(self, t: tb.Transfer, flags: int, ts: int, imported: bool) -> int:
        """A post or void of a pending transfer: its status, applied when it is CREATED."""
        status = resolution_fields_status(t, flags)
        if status is not None:
            return status
        p = self.transfers.get(t.pending_id)
        if p is None:
            return TS.PENDING_TRANSFER_NOT_FOUND
        post = bool(flags & T_POST)
        amount = resolved_amount(post, t.amount, p.amount)
        status = pending_match_status(t, p)
        if status is None:
            status = pending_state_status(post, amount, p, ts)
        if status is not None:
            return status
        if imported and self._regresses(ts):
            return TS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS
        dr = self.accounts[p.dr]
        cr = self.accounts[p.cr]
        # A closed account still accepts voids.
        if post:
            status = closed_status(dr, cr)
            if status is not None:
                return status
        self._resolve(t, flags, ts, p, amount)
        return CREATED

    def _resolve(self, t: tb.Transfer, flags: int, ts: int, p: TransferRow, amount: int) -> None:
        """Apply a post or void of `p`: release its reservation, post `amount` or re-open, record it."""
        dr = self.accounts[p.dr]
        cr = self.accounts[p.cr]
        self._touch(dr)
        self._touch(cr)
        if self._in_chain:
            self._undo.append((p, p.status))
        # Persisted as a status update unless p itself is new in this request (the store filters).
        self.changes.dirty_pendings[p.id] = p
        # The whole reservation is released whatever amount is posted.
        dr.dp -= p.amount
        cr.cp -= p.amount
        if flags & T_POST:
            dr.dpo += amount
            cr.cpo += amount
            p.status = P_POSTED
        else:
            # Voiding a closing transfer re-opens the side(s) it closed.
            _reopen(p, dr, cr)
            p.status = P_VOIDED
        self._insert(
            # Positional: keyword arguments make a slots dataclass markedly slower to build.
            TransferRow(
                t.id,
                p.dr,
                p.cr,
                amount,
                p.id,  # pending_id
                t.user_data_128 or p.ud128,
                t.user_data_64 or p.ud64,
                t.user_data_32 or p.ud32,
                0,  # timeout
                p.ledger,
                p.code,
                flags,
                ts,
                P_NONE,  # status
                0,  # expires_at
                (dr.dp, dr.dpo, dr.cp, dr.cpo) if dr.flags & A_HISTORY else None,  # dr_snapshot
                (cr.dp, cr.dpo, cr.cp, cr.cpo) if cr.flags & A_HISTORY else None,  # cr_snapshot
            )
        )

    def _touch(self, acct: AccountRow) -> None:
        if self._in_chain:
            self._undo.append((acct, acct.dp, acct.dpo, acct.cp, acct.cpo, acct.flags))
        self.changes.dirty_accounts[acct.id] = acct

    def _insert(self, row: TransferRow) -> None:
        self.transfers[row.id] = row
        self.changes.transfers.append(row)
        if row.timestamp > self.imports.max_transfer_timestamp:
            self.imports.max_transfer_timestamp = row.timestamp


def _reopen(p: TransferRow, dr: AccountRow, cr: AccountRow) -> None:
    """A voided or expired closing transfer re-opens the side(s) it closed."""
    if p.flags & T_CLOSING_DEBIT:
        dr.flags &= ~A_CLOSED
    if p.flags & T_CLOSING_CREDIT:
        cr.flags &= ~A_CLOSED


def create_transfers(
    events: Sequence[tb.Transfer],
    accounts: dict[int, AccountRow],
    transfers: dict[int, TransferRow],
    burned: set[int],
    first_ts: int,
    imports: ImportContext | None = None,
) -> tuple[list[tuple[int, int]], Changes]:
    """Apply one create_transfers request over preloaded state (see `TransferBatch`)."""
    changes = Changes()
    results = TransferBatch(events, accounts, transfers, burned, changes, imports).run(first_ts)
    changes.last_timestamp = first_ts + len(events) - 1 if events else first_ts - 1
    return results, changes


def expire(due: Sequence[TransferRow], accounts: dict[int, AccountRow], changes: Changes) -> None:
    """An expiry pulse over `due` (pending, expires_at ≤ now), in (expires_at, timestamp) order.

    Releases the reservations, re-opens accounts closed by the expiring transfer and marks it expired.
    No history row: expiries are not transfers.
    """
    for p in due:
        if p.status != P_PENDING:
            continue
        dr = accounts[p.dr]
        cr = accounts[p.cr]
        dr.dp -= p.amount
        cr.cp -= p.amount
        _reopen(p, dr, cr)
        p.status = P_EXPIRED
        changes.dirty_accounts[dr.id] = dr
        changes.dirty_accounts[cr.id] = cr
        changes.dirty_pendings[p.id] = p
