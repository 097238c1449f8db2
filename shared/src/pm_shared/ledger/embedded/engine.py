"""The ledger state machine for transfers: TigerBeetle 0.17.9's create_transfers (§4) and expiry, no I/O.

The caller loads everything a request can touch (accounts, transfers with the batch's ids, pending
transfers referenced by posts and voids, burned ids), runs one request here, and persists the
returned `Changes`. Rows handed in are mutated in place; on a failed persist the caller must drop them.
Section numbers (§) refer to the project's reference `tigerbeetle-semantics.md`.
"""

from __future__ import annotations

from collections.abc import Sequence

import tigerbeetle as tb

from pm_shared.ledger.embedded.batch import CREATED, TRANSFER_CODES, TS, Applier, ImportContext, run_batch
from pm_shared.ledger.embedded.model import (
    A_CLOSED,
    A_CREDITS_MUST_NOT_EXCEED_DEBITS,
    A_DEBITS_MUST_NOT_EXCEED_CREDITS,
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
    TS_MAX,
    U128_MAX,
    AccountRow,
    Changes,
    TransferRow,
)

_BALANCING = T_BALANCING_DEBIT | T_BALANCING_CREDIT
_CLOSING = T_CLOSING_DEBIT | T_CLOSING_CREDIT

# §4.6: the transient statuses, which burn the transfer id.
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


_UndoEntry = tuple[AccountRow, int, int, int, int, int] | tuple[TransferRow, int]


class TransferBatch(Applier):
    """create_transfers (§4) over preloaded state.

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

    # Linked-chain scopes (§3): an undo log of account balances/flags and pending statuses.

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

    def _touch(self, acct: AccountRow) -> None:
        if self._in_chain:
            self._undo.append((acct, acct.dp, acct.dpo, acct.cp, acct.cpo, acct.flags))
        self.changes.dirty_accounts[acct.id] = acct

    def apply(self, index: int, ts: int, imported: bool) -> tuple[int, int]:
        t = self.events[index]
        flags = int(t.flags) & 0xFFFF
        tid = t.id
        # §4.1
        if flags & ~T_KNOWN:
            return 4, ts
        if tid == 0:
            return 5, ts
        if tid == U128_MAX:
            return 6, ts
        e = self.transfers.get(tid)
        if e is not None:
            return self._exists(t, flags, e)
        if tid in self.burned:
            return 68, ts
        if flags & (T_POST | T_VOID):
            return self._post_or_void(t, flags, ts, imported)
        # §4.2
        dr_id = t.debit_account_id
        cr_id = t.credit_account_id
        if dr_id == 0:
            return 8, ts
        if dr_id == U128_MAX:
            return 9, ts
        if cr_id == 0:
            return 10, ts
        if cr_id == U128_MAX:
            return 11, ts
        if dr_id == cr_id:
            return 12, ts
        if t.pending_id != 0:
            return 13, ts
        pending = flags & T_PENDING
        timeout = t.timeout
        if not pending:
            if timeout != 0:
                return 17, ts
            if flags & _CLOSING:
                return 64, ts
        ledger = t.ledger
        if ledger == 0:
            return 19, ts
        if t.code == 0:
            return 20, ts
        accounts = self.accounts
        dr = accounts.get(dr_id)
        if dr is None:
            return 21, ts
        cr = accounts.get(cr_id)
        if cr is None:
            return 22, ts
        if dr.ledger != cr.ledger:
            return 23, ts
        if ledger != dr.ledger:
            return 24, ts
        if imported:
            imports = self.imports
            if ts <= imports.max_transfer_timestamp or ts in imports.account_timestamps:
                return 60, ts
            if ts <= dr.timestamp:
                return 61, ts
            if ts <= cr.timestamp:
                return 62, ts
            if timeout != 0:
                return 63, ts
        if dr.flags & A_CLOSED:
            return 65, ts
        if cr.flags & A_CLOSED:
            return 66, ts
        # §4.7: balancing clamps whether or not the account has limit flags.
        amount = t.amount
        if flags & T_BALANCING_DEBIT:
            room = dr.cpo - (dr.dpo + dr.dp)
            amount = min(amount, room if room > 0 else 0)
        if flags & T_BALANCING_CREDIT:
            room = cr.dpo - (cr.cpo + cr.cp)
            amount = min(amount, room if room > 0 else 0)
        # §4.2 rows 28-33: u128 overflow (posted is checked for pending transfers too).
        if pending:
            if dr.dp + amount > U128_MAX:
                return 47, ts
            if cr.cp + amount > U128_MAX:
                return 48, ts
        if dr.dpo + amount > U128_MAX:
            return 49, ts
        if cr.cpo + amount > U128_MAX:
            return 50, ts
        if dr.dp + dr.dpo + amount > U128_MAX:
            return 51, ts
        if cr.cp + cr.cpo + amount > U128_MAX:
            return 52, ts
        if timeout and ts + timeout * NS_PER_S > TS_MAX:
            return 53, ts
        # §4.2 rows 35-36: pending debits count against the limit, pending credits are not funds.
        if dr.flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS and dr.dp + dr.dpo + amount > dr.cpo:
            return 54, ts
        if cr.flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS and cr.cp + cr.cpo + amount > cr.dpo:
            return 55, ts
        # §4.5: success.
        self._touch(dr)
        self._touch(cr)
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
        row = TransferRow(
            tid,
            dr_id,
            cr_id,
            amount,
            0,
            t.user_data_128,
            t.user_data_64,
            t.user_data_32,
            timeout,
            ledger,
            t.code,
            flags,
            ts,
            P_PENDING if pending else P_NONE,
            ts + timeout * NS_PER_S if pending and timeout else 0,
            (dr.dp, dr.dpo, dr.cp, dr.cpo) if dr.flags & A_HISTORY else None,
            (cr.dp, cr.dpo, cr.cp, cr.cpo) if cr.flags & A_HISTORY else None,
        )
        self._insert(row)
        return CREATED, ts

    def _insert(self, row: TransferRow) -> None:
        self.transfers[row.id] = row
        self.changes.transfers.append(row)
        if row.timestamp > self.imports.max_transfer_timestamp:
            self.imports.max_transfer_timestamp = row.timestamp

    def _post_or_void(self, t: tb.Transfer, flags: int, ts: int, imported: bool) -> tuple[int, int]:
        # §4.3
        post = flags & T_POST
        if post and flags & T_VOID:
            return 7, ts
        if flags & (T_PENDING | _BALANCING | _CLOSING):
            return 7, ts
        pid = t.pending_id
        if pid == 0:
            return 14, ts
        if pid == U128_MAX:
            return 15, ts
        if pid == t.id:
            return 16, ts
        if t.timeout != 0:
            return 17, ts
        p = self.transfers.get(pid)
        if p is None:
            return 25, ts
        if not p.flags & T_PENDING:
            return 26, ts
        if t.debit_account_id and t.debit_account_id != p.dr:
            return 27, ts
        if t.credit_account_id and t.credit_account_id != p.cr:
            return 28, ts
        if t.ledger and t.ledger != p.ledger:
            return 29, ts
        if t.code and t.code != p.code:
            return 30, ts
        # §4.8: post AMOUNT_MAX = the pending amount, post 0 posts zero; void 0 = the pending amount.
        amount = t.amount
        if post:
            if amount == U128_MAX:
                amount = p.amount
        elif amount == 0:
            amount = p.amount
        if amount > p.amount:
            return 31, ts
        if not post and amount < p.amount:
            return 32, ts
        status = p.status
        if status == P_POSTED:
            return 33, ts
        if status == P_VOIDED:
            return 34, ts
        if status == P_EXPIRED:
            return 35, ts
        # §4.9: strict at resolution time, even before the expiry pulse has run.
        if p.timeout and p.timestamp + p.timeout * NS_PER_S <= ts:
            return 35, ts
        if imported:
            imports = self.imports
            if ts <= imports.max_transfer_timestamp or ts in imports.account_timestamps:
                return 60, ts
        dr = self.accounts[p.dr]
        cr = self.accounts[p.cr]
        # §4.10: a closed account still accepts voids.
        if post:
            if dr.flags & A_CLOSED:
                return 65, ts
            if cr.flags & A_CLOSED:
                return 66, ts
        self._touch(dr)
        self._touch(cr)
        if self._in_chain:
            self._undo.append((p, p.status))
        # Persisted as a status update unless p itself is new in this request (the store filters).
        self.changes.dirty_pendings[p.id] = p
        # §4.5: the whole reservation is released whatever amount is posted.
        dr.dp -= p.amount
        cr.cp -= p.amount
        if post:
            dr.dpo += amount
            cr.cpo += amount
            p.status = P_POSTED
        else:
            # §4.10: voiding a closing transfer re-opens the side(s) it closed.
            if p.flags & T_CLOSING_DEBIT:
                dr.flags &= ~A_CLOSED
            if p.flags & T_CLOSING_CREDIT:
                cr.flags &= ~A_CLOSED
            p.status = P_VOIDED
        row = TransferRow(
            t.id,
            p.dr,
            p.cr,
            amount,
            pid,
            t.user_data_128 or p.ud128,
            t.user_data_64 or p.ud64,
            t.user_data_32 or p.ud32,
            0,
            p.ledger,
            p.code,
            flags,
            ts,
            P_NONE,
            0,
            (dr.dp, dr.dpo, dr.cp, dr.cpo) if dr.flags & A_HISTORY else None,
            (cr.dp, cr.dpo, cr.cp, cr.cpo) if cr.flags & A_HISTORY else None,
        )
        self._insert(row)
        return CREATED, ts

    def _exists(self, t: tb.Transfer, flags: int, e: TransferRow) -> tuple[int, int]:
        # §4.4: the first difference wins; the timestamp is never compared.
        ts = e.timestamp
        if flags != e.flags:
            return 36, ts
        if t.pending_id != e.pending_id:
            return 40, ts
        if t.timeout != e.timeout:
            return 44, ts
        if not e.flags & (T_POST | T_VOID):
            if t.debit_account_id != e.dr:
                return 37, ts
            if t.credit_account_id != e.cr:
                return 38, ts
            if e.flags & _BALANCING:
                if t.amount < e.amount:
                    return 39, ts
            elif t.amount != e.amount:
                return 39, ts
            if t.user_data_128 != e.ud128:
                return 41, ts
            if t.user_data_64 != e.ud64:
                return 42, ts
            if t.user_data_32 != e.ud32:
                return 43, ts
            if t.ledger != e.ledger:
                return 67, ts
            if t.code != e.code:
                return 45, ts
            return 46, ts
        p = self.transfers[e.pending_id]
        if t.debit_account_id and t.debit_account_id != e.dr:
            return 37, ts
        if t.credit_account_id and t.credit_account_id != e.cr:
            return 38, ts
        if e.flags & T_VOID:
            if (e.amount != p.amount) if t.amount == 0 else (t.amount != e.amount):
                return 39, ts
        elif (e.amount != p.amount) if t.amount == U128_MAX else (t.amount != e.amount):
            return 39, ts
        if (e.ud128 != p.ud128) if t.user_data_128 == 0 else (t.user_data_128 != e.ud128):
            return 41, ts
        if (e.ud64 != p.ud64) if t.user_data_64 == 0 else (t.user_data_64 != e.ud64):
            return 42, ts
        if (e.ud32 != p.ud32) if t.user_data_32 == 0 else (t.user_data_32 != e.ud32):
            return 43, ts
        if t.ledger and t.ledger != e.ledger:
            return 67, ts
        if t.code and t.code != e.code:
            return 45, ts
        return 46, ts


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
    """§4.9: an expiry pulse over `due` (pending, expires_at ≤ now), in (expires_at, timestamp) order.

    Releases the reservations, re-opens accounts closed by the expiring transfer and marks it expired.
    No history row: expiries are not transfers (§6.3).
    """
    for p in due:
        if p.status != P_PENDING:
            continue
        dr = accounts[p.dr]
        cr = accounts[p.cr]
        dr.dp -= p.amount
        cr.cp -= p.amount
        if p.flags & T_CLOSING_DEBIT:
            dr.flags &= ~A_CLOSED
        if p.flags & T_CLOSING_CREDIT:
            cr.flags &= ~A_CLOSED
        p.status = P_EXPIRED
        changes.dirty_accounts[dr.id] = dr
        changes.dirty_accounts[cr.id] = cr
        changes.dirty_pendings[p.id] = p
