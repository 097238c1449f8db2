"""The batch driver shared by create_accounts and create_transfers (§3): batch-level checks, linked chains.

Section numbers (§) refer to the project's reference `tigerbeetle-semantics.md`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import tigerbeetle as tb

from pm_shared.ledger.embedded.model import TS_MAX

TS = tb.CreateTransferStatus
AS = tb.CreateAccountStatus

CREATED = 0xFFFFFFFF

_TRANSFER_STATUS: dict[int, tb.CreateTransferStatus] = {int(s): s for s in TS}
_ACCOUNT_STATUS: dict[int, tb.CreateAccountStatus] = {int(s): s for s in AS}


def transfer_status(code: int) -> tb.CreateTransferStatus:
    return _TRANSFER_STATUS[code]


def account_status(code: int) -> tb.CreateAccountStatus:
    return _ACCOUNT_STATUS[code]


@dataclass(slots=True)
class _BatchCodes:
    imported_expected: int
    imported_not_expected: int
    out_of_range: int
    must_not_advance: int


TRANSFER_CODES = _BatchCodes(56, 57, 58, 59)
ACCOUNT_CODES = _BatchCodes(22, 23, 24, 25)


@dataclass(slots=True)
class ImportContext:
    """What imported events are checked against (§4.11); loaded only for imported batches."""

    max_account_timestamp: int = 0
    max_transfer_timestamp: int = 0
    account_timestamps: set[int] = field(default_factory=set)
    """Account timestamps equal to one of the batch's transfer timestamps."""
    transfer_timestamps: set[int] = field(default_factory=set)
    """Transfer timestamps equal to one of the batch's account timestamps."""


def run_batch(
    flags: Sequence[int],
    timestamps: Sequence[int],
    first_ts: int,
    imported_bit: int,
    codes: _BatchCodes,
    apply: Applier,
) -> list[tuple[int, int]]:
    """§3: the batch-level checks and linked-chain handling shared by accounts and transfers.

    Returns one (timestamp, status code) per event.
    """
    n = len(flags)
    results: list[tuple[int, int]] = []
    if n == 0:
        return results
    commit_ts = first_ts + n - 1  # T, the batch's commit timestamp
    batch_imported = bool(flags[0] & imported_bit)
    chain_start = -1
    chain_broken = False
    for i in range(n):
        f = flags[i]
        ts = first_ts + i
        linked = f & 1
        result_ts = ts
        if linked and chain_start < 0:
            chain_start = i
            chain_broken = False
            apply.scope_open()
        # §3 batch-level checks, in order.
        if linked and i == n - 1:
            status = 2  # linked_event_chain_open
        elif chain_broken:
            status = 1  # linked_event_failed
        elif bool(f & imported_bit) != batch_imported:
            status = codes.imported_expected if batch_imported else codes.imported_not_expected
        elif batch_imported:
            user_ts = timestamps[i]
            if not 1 <= user_ts <= TS_MAX:
                status = codes.out_of_range
            elif user_ts >= commit_ts:
                status = codes.must_not_advance
            else:
                status, result_ts = apply.apply(i, user_ts, True)
        elif timestamps[i] != 0:
            status = 3  # timestamp_must_be_zero
        else:
            status, result_ts = apply.apply(i, ts, False)
        if status != CREATED:
            result_ts = result_ts if status == apply.exists_code else ts
            if chain_start >= 0 and not chain_broken:
                # §3: a chain breaks on any non-created status (exists included): undo its applied
                # events, rewrite their results, and let the remaining ones fail.
                chain_broken = True
                apply.scope_discard()
                for j in range(chain_start, i):
                    results[j] = (first_ts + j, 1)
            # §3: the burn is recorded after the rollback, so it survives it.
            apply.failed(i, status)
        results.append((result_ts, status))
        if chain_start >= 0 and (not linked or status == 2):
            if not chain_broken:
                apply.scope_persist()
            chain_start = -1
            chain_broken = False
    return results


class Applier:
    """One request type's object checks and effects, driven by `run_batch`."""

    exists_code: int
    """The `exists` status, whose result carries the existing object's timestamp (§3)."""

    def apply(self, index: int, ts: int, imported: bool) -> tuple[int, int]:
        """Validate and apply event `index` at `ts` (the user's timestamp when imported).

        Returns (status code, result timestamp).
        """
        raise NotImplementedError

    def scope_open(self) -> None:
        """A linked chain begins: remember how to undo what it applies."""
        raise NotImplementedError

    def scope_discard(self) -> None:
        """The chain broke: undo every event of it applied so far."""
        raise NotImplementedError

    def scope_persist(self) -> None:
        """The chain completed: keep its effects."""
        raise NotImplementedError

    def failed(self, index: int, status: int) -> None:
        """Called once per failed event, after any chain rollback."""
