"""The checks of one create_transfers event, as pure functions of the event and the rows it names.

`TransferBatch` (engine.py) calls them in TigerBeetle 0.17.9's order; each returns the status of the
first check that fails, or None when the event passes them (see docs/ledger.md).
"""

from __future__ import annotations

import tigerbeetle as tb

from pm_shared.ledger.embedded.batch import TS
from pm_shared.ledger.embedded.model import (
    A_CLOSED,
    A_CREDITS_MUST_NOT_EXCEED_DEBITS,
    A_DEBITS_MUST_NOT_EXCEED_CREDITS,
    NS_PER_S,
    P_EXPIRED,
    P_POSTED,
    P_VOIDED,
    T_BALANCING_CREDIT,
    T_BALANCING_DEBIT,
    T_CLOSING_CREDIT,
    T_CLOSING_DEBIT,
    T_PENDING,
    T_POST,
    T_VOID,
    TS_MAX,
    U128_MAX,
    AccountRow,
    TransferRow,
)

_BALANCING = T_BALANCING_DEBIT | T_BALANCING_CREDIT
_CLOSING = T_CLOSING_DEBIT | T_CLOSING_CREDIT


def new_transfer_status(t: tb.Transfer, flags: int) -> int | None:
    """The fields of a new transfer, before any account is looked at."""
    dr_id = t.debit_account_id
    cr_id = t.credit_account_id
    if dr_id == 0:
        return TS.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if dr_id == U128_MAX:
        return TS.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if cr_id == 0:
        return TS.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if cr_id == U128_MAX:
        return TS.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
    if dr_id == cr_id:
        return TS.ACCOUNTS_MUST_BE_DIFFERENT
    if t.pending_id != 0:
        return TS.PENDING_ID_MUST_BE_ZERO
    if not flags & T_PENDING:
        if t.timeout != 0:
            return TS.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if flags & _CLOSING:
            return TS.CLOSING_TRANSFER_MUST_BE_PENDING
    if t.ledger == 0:
        return TS.LEDGER_MUST_NOT_BE_ZERO
    if t.code == 0:
        return TS.CODE_MUST_NOT_BE_ZERO
    return None


def closed_status(dr: AccountRow, cr: AccountRow) -> int | None:
    if dr.flags & A_CLOSED:
        return TS.DEBIT_ACCOUNT_ALREADY_CLOSED
    if cr.flags & A_CLOSED:
        return TS.CREDIT_ACCOUNT_ALREADY_CLOSED
    return None


def balancing_amount(amount: int, flags: int, dr: AccountRow, cr: AccountRow) -> int:
    """Balancing clamps the amount to the room left, whether or not the account has limit flags."""
    if flags & T_BALANCING_DEBIT:
        room = dr.cpo - (dr.dpo + dr.dp)
        amount = min(amount, room if room > 0 else 0)
    if flags & T_BALANCING_CREDIT:
        room = cr.dpo - (cr.cpo + cr.cp)
        amount = min(amount, room if room > 0 else 0)
    return amount


def overflow_status(
    amount: int, pending: int, timeout: int, ts: int, dr: AccountRow, cr: AccountRow
) -> int | None:
    """u128 overflow of the balances (posted is checked for pending transfers too), then the timeout."""
    if pending:
        if dr.dp + amount > U128_MAX:
            return TS.OVERFLOWS_DEBITS_PENDING
        if cr.cp + amount > U128_MAX:
            return TS.OVERFLOWS_CREDITS_PENDING
    if dr.dpo + amount > U128_MAX:
        return TS.OVERFLOWS_DEBITS_POSTED
    if cr.cpo + amount > U128_MAX:
        return TS.OVERFLOWS_CREDITS_POSTED
    if dr.dp + dr.dpo + amount > U128_MAX:
        return TS.OVERFLOWS_DEBITS
    if cr.cp + cr.cpo + amount > U128_MAX:
        return TS.OVERFLOWS_CREDITS
    if timeout and ts + timeout * NS_PER_S > TS_MAX:
        return TS.OVERFLOWS_TIMEOUT
    return None


def limit_status(amount: int, dr: AccountRow, cr: AccountRow) -> int | None:
    """Balance limits: pending debits count against the limit, pending credits are not funds."""
    if dr.flags & A_DEBITS_MUST_NOT_EXCEED_CREDITS and dr.dp + dr.dpo + amount > dr.cpo:
        return TS.EXCEEDS_CREDITS
    if cr.flags & A_CREDITS_MUST_NOT_EXCEED_DEBITS and cr.cp + cr.cpo + amount > cr.dpo:
        return TS.EXCEEDS_DEBITS
    return None


def resolution_fields_status(t: tb.Transfer, flags: int) -> int | None:
    """The fields of a post or void, before the pending transfer is looked at."""
    if flags & T_POST and flags & T_VOID:
        return TS.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & (T_PENDING | _BALANCING | _CLOSING):
        return TS.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    pid = t.pending_id
    if pid == 0:
        return TS.PENDING_ID_MUST_NOT_BE_ZERO
    if pid == U128_MAX:
        return TS.PENDING_ID_MUST_NOT_BE_INT_MAX
    if pid == t.id:
        return TS.PENDING_ID_MUST_BE_DIFFERENT
    if t.timeout != 0:
        return TS.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    return None


def resolved_amount(post: bool, amount: int, pending_amount: int) -> int:
    """A post of AMOUNT_MAX posts the pending amount (a post of 0 posts zero); a void of 0 voids it all."""
    if post:
        return pending_amount if amount == U128_MAX else amount
    return pending_amount if amount == 0 else amount


def pending_match_status(t: tb.Transfer, p: TransferRow) -> int | None:
    """A post or void must name a pending transfer and may only repeat its accounts, ledger and code."""
    if not p.flags & T_PENDING:
        return TS.PENDING_TRANSFER_NOT_PENDING
    if t.debit_account_id and t.debit_account_id != p.dr:
        return TS.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id and t.credit_account_id != p.cr:
        return TS.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if t.ledger and t.ledger != p.ledger:
        return TS.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
    if t.code and t.code != p.code:
        return TS.PENDING_TRANSFER_HAS_DIFFERENT_CODE
    return None


def pending_state_status(post: bool, amount: int, p: TransferRow, ts: int) -> int | None:
    """The amount against the reservation, then whether the reservation is still open at `ts`."""
    if amount > p.amount:
        return TS.EXCEEDS_PENDING_TRANSFER_AMOUNT
    if not post and amount < p.amount:
        return TS.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    status = p.status
    if status == P_POSTED:
        return TS.PENDING_TRANSFER_ALREADY_POSTED
    if status == P_VOIDED:
        return TS.PENDING_TRANSFER_ALREADY_VOIDED
    if status == P_EXPIRED:
        return TS.PENDING_TRANSFER_EXPIRED
    # Strict at resolution time, even before the expiry pulse has run.
    if p.timeout and p.timestamp + p.timeout * NS_PER_S <= ts:
        return TS.PENDING_TRANSFER_EXPIRED
    return None


def exists_status(t: tb.Transfer, flags: int, e: TransferRow, transfers: dict[int, TransferRow]) -> int:
    """A transfer with this id exists: the first difference wins; the timestamp is never compared."""
    if flags != e.flags:
        return TS.EXISTS_WITH_DIFFERENT_FLAGS
    if t.pending_id != e.pending_id:
        return TS.EXISTS_WITH_DIFFERENT_PENDING_ID
    if t.timeout != e.timeout:
        return TS.EXISTS_WITH_DIFFERENT_TIMEOUT
    if e.flags & (T_POST | T_VOID):
        return _exists_resolution_status(t, e, transfers[e.pending_id])
    return _exists_transfer_status(t, e)


def _exists_transfer_status(t: tb.Transfer, e: TransferRow) -> int:
    """An existing single-phase or pending transfer: every field must match (balancing: amount ≥)."""
    if t.debit_account_id != e.dr:
        return TS.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id != e.cr:
        return TS.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    if (t.amount < e.amount) if e.flags & _BALANCING else (t.amount != e.amount):
        return TS.EXISTS_WITH_DIFFERENT_AMOUNT
    if t.user_data_128 != e.ud128:
        return TS.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if t.user_data_64 != e.ud64:
        return TS.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if t.user_data_32 != e.ud32:
        return TS.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.ledger != e.ledger:
        return TS.EXISTS_WITH_DIFFERENT_LEDGER
    if t.code != e.code:
        return TS.EXISTS_WITH_DIFFERENT_CODE
    return TS.EXISTS


def _exists_resolution_status(t: tb.Transfer, e: TransferRow, p: TransferRow) -> int:
    """An existing post or void of `p`: zero fields match what was inherited from `p`."""
    if t.debit_account_id and t.debit_account_id != e.dr:
        return TS.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
    if t.credit_account_id and t.credit_account_id != e.cr:
        return TS.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
    inherit_amount = t.amount == 0 if e.flags & T_VOID else t.amount == U128_MAX
    if (e.amount != p.amount) if inherit_amount else (t.amount != e.amount):
        return TS.EXISTS_WITH_DIFFERENT_AMOUNT
    if (e.ud128 != p.ud128) if t.user_data_128 == 0 else (t.user_data_128 != e.ud128):
        return TS.EXISTS_WITH_DIFFERENT_USER_DATA_128
    if (e.ud64 != p.ud64) if t.user_data_64 == 0 else (t.user_data_64 != e.ud64):
        return TS.EXISTS_WITH_DIFFERENT_USER_DATA_64
    if (e.ud32 != p.ud32) if t.user_data_32 == 0 else (t.user_data_32 != e.ud32):
        return TS.EXISTS_WITH_DIFFERENT_USER_DATA_32
    if t.ledger and t.ledger != e.ledger:
        return TS.EXISTS_WITH_DIFFERENT_LEDGER
    if t.code and t.code != e.code:
        return TS.EXISTS_WITH_DIFFERENT_CODE
    return TS.EXISTS
