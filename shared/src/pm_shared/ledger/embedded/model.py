"""The engine's in-memory rows and constants: plain ints throughout, so validation stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field

import tigerbeetle as tb

U128_MAX = (1 << 128) - 1
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
U16_MAX = (1 << 16) - 1
# Imported timestamps, and every timestamp, live in [1, 2^63-1].
TS_MAX = (1 << 63) - 1
NS_PER_S = 1_000_000_000

# Account flags, as TigerBeetle numbers them.
A_LINKED = 1
A_DEBITS_MUST_NOT_EXCEED_CREDITS = 2
A_CREDITS_MUST_NOT_EXCEED_DEBITS = 4
A_HISTORY = 8
A_IMPORTED = 16
A_CLOSED = 32
A_KNOWN = 0x3F

# Transfer flags, as TigerBeetle numbers them.
T_LINKED = 1
T_PENDING = 2
T_POST = 4
T_VOID = 8
T_BALANCING_DEBIT = 16
T_BALANCING_CREDIT = 32
T_CLOSING_DEBIT = 64
T_CLOSING_CREDIT = 128
T_IMPORTED = 256
T_KNOWN = 0x1FF

# ledger.transfers.pending_status (pending transfers only).
P_NONE = 0
P_PENDING = 1
P_POSTED = 2
P_VOIDED = 3
P_EXPIRED = 4

Balances = tuple[int, int, int, int]
"""(debits_pending, debits_posted, credits_pending, credits_posted)."""


@dataclass(slots=True)
class AccountRow:
    id: int
    dp: int
    dpo: int
    cp: int
    cpo: int
    ud128: int
    ud64: int
    ud32: int
    ledger: int
    code: int
    flags: int
    timestamp: int

    def to_tb(self) -> tb.Account:
        return tb.Account(
            id=self.id,
            debits_pending=self.dp,
            debits_posted=self.dpo,
            credits_pending=self.cp,
            credits_posted=self.cpo,
            user_data_128=self.ud128,
            user_data_64=self.ud64,
            user_data_32=self.ud32,
            ledger=self.ledger,
            code=self.code,
            flags=tb.AccountFlags(self.flags),
            timestamp=self.timestamp,
        )


@dataclass(slots=True)
class TransferRow:
    id: int
    dr: int
    cr: int
    amount: int
    pending_id: int
    ud128: int
    ud64: int
    ud32: int
    timeout: int
    ledger: int
    code: int
    flags: int
    timestamp: int
    status: int = P_NONE
    expires_at: int = 0
    """0 when the transfer never expires."""
    dr_snapshot: Balances | None = None
    """The debit account's balances after this transfer, kept only for history accounts."""
    cr_snapshot: Balances | None = None

    def to_tb(self) -> tb.Transfer:
        return tb.Transfer(
            id=self.id,
            debit_account_id=self.dr,
            credit_account_id=self.cr,
            amount=self.amount,
            pending_id=self.pending_id,
            user_data_128=self.ud128,
            user_data_64=self.ud64,
            user_data_32=self.ud32,
            timeout=self.timeout,
            ledger=self.ledger,
            code=self.code,
            flags=tb.TransferFlags(self.flags),
            timestamp=self.timestamp,
        )


@dataclass(slots=True)
class Changes:
    """What one request changed, to persist in one transaction."""

    accounts: list[AccountRow] = field(default_factory=list)
    """New accounts."""
    transfers: list[TransferRow] = field(default_factory=list)
    """New transfers (their `status` is final: a pending created and posted in one batch says posted)."""
    burned: list[int] = field(default_factory=list)
    """Transfer ids newly burned by a transient failure (see engine.TRANSIENT)."""
    dirty_accounts: dict[int, AccountRow] = field(default_factory=dict)
    """Existing accounts whose balances or closed bit may have changed."""
    dirty_pendings: dict[int, TransferRow] = field(default_factory=dict)
    """Existing pending transfers whose status may have changed."""
    last_timestamp: int = 0
