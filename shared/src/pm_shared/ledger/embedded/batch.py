"""The batch driver shared by create_accounts and create_transfers: batch-level checks, linked chains.

See docs/ledger.md for the semantics (TigerBeetle 0.17.9's) it reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import tigerbeetle as tb

from pm_shared.ledger.embedded.model import TS_MAX

TS = tb.CreateTransferStatus
AS = tb.CreateAccountStatus

CREATED = 0xFFFFFFFF
# The batch-level statuses the two request types share (same codes in both enums).
_LINKED_EVENT_FAILED = 1
_LINKED_EVENT_CHAIN_OPEN = 2
_TIMESTAMP_MUST_BE_ZERO = 3

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
    """What imported events are checked against; loaded only for imported batches."""

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
    """The batch-level checks and linked-chain handling shared by accounts and transfers.

    Returns one (timestamp, status code) per event.
    """
    n = len(flags)
    results: list[tuple[int, int]] = []
    if n == 0:
        return results
    checks = _BatchChecks(
        flags, timestamps, first_ts, first_ts + n - 1, bool(flags[0] & imported_bit), imported_bit, codes
    )
    chain_start = -1
    chain_broken = False
    for i in range(n):
        linked = flags[i] & 1
        if linked and chain_start < 0:
            chain_start = i
            chain_broken = False
            apply.scope_open()
        status, result_ts = checks.event(i, chain_broken, apply)
        if status != CREATED:
            if status != apply.exists_code:
                result_ts = first_ts + i
            if chain_start >= 0 and not chain_broken:
                # A chain breaks on any non-created status (exists included): undo its applied
                # events, rewrite their results, and let the remaining ones fail.
                chain_broken = True
                apply.scope_discard()
                for j in range(chain_start, i):
                    results[j] = (first_ts + j, _LINKED_EVENT_FAILED)
            # The burn is recorded after the rollback, so it survives it.
            apply.failed(i, status)
        results.append((result_ts, status))
        if chain_start >= 0 and (not linked or status == _LINKED_EVENT_CHAIN_OPEN):
            if not chain_broken:
                apply.scope_persist()
            chain_start = -1
            chain_broken = False
    return results


@dataclass(slots=True, frozen=True)
class _BatchChecks:
    """The checks every event of one batch meets before its own (the same codes for both kinds)."""

    flags: Sequence[int]
    timestamps: Sequence[int]
    first_ts: int
    commit_ts: int
    """T, the batch's commit timestamp: the last event's."""
    imported: bool
    """Whether the batch imports events (its first event says so)."""
    imported_bit: int
    codes: _BatchCodes

    def event(self, i: int, chain_broken: bool, apply: Applier) -> tuple[int, int]:
        """The batch-level checks of event `i`, in order, then the event's own (`apply`)."""
        f = self.flags[i]
        ts = self.first_ts + i
        if f & 1 and i == len(self.flags) - 1:
            return _LINKED_EVENT_CHAIN_OPEN, ts
        if chain_broken:
            return _LINKED_EVENT_FAILED, ts
        codes = self.codes
        if bool(f & self.imported_bit) != self.imported:
            return (codes.imported_expected if self.imported else codes.imported_not_expected), ts
        user_ts = self.timestamps[i]
        if self.imported:
            if not 1 <= user_ts <= TS_MAX:
                return codes.out_of_range, ts
            if user_ts >= self.commit_ts:
                return codes.must_not_advance, ts
            return apply.apply(i, user_ts, True)
        if user_ts != 0:
            return _TIMESTAMP_MUST_BE_ZERO, ts
        return apply.apply(i, ts, False)


class Applier:
    """One request type's object checks and effects, driven by `run_batch`."""

    exists_code: int
    """The `exists` status, whose result carries the existing object's timestamp."""

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
