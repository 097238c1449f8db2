"""Each command's result, read out of a request's dense results (one per event, in order)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import tigerbeetle as tb

from pm_ledger_writer.packing import (
    SUCCESS,
    YIELD_EVENTS,
    Batch,
    all_succeeded,
    is_committed_chain_retry,
    result_message_id,
)
from pm_shared.ledger.api import Ledger
from pm_shared.messages import (
    LedgerAccount,
    LedgerCommand,
    LedgerEventResult,
    LedgerResult,
    LedgerTransfer,
    now,
)

ID_ALREADY_FAILED = tb.CreateTransferStatus.ID_ALREADY_FAILED.name
EXISTS = tb.CreateTransferStatus.EXISTS.name
# Status names looked up once: `.name` on an enum member is a descriptor call, per event.
_ACCOUNT_NAMES = {int(s): s.name for s in tb.CreateAccountStatus}
_TRANSFER_NAMES = {int(s): s.name for s in tb.CreateTransferStatus}


async def _confirm_chain(
    ledger: Ledger, kind: str, events: list[LedgerEventResult]
) -> list[LedgerEventResult]:
    """A committed chain retried: every id must exist; then each event is reported as EXISTS."""
    ids = [e.id for e in events]
    found = await (ledger.lookup_accounts(ids) if kind == "accounts" else ledger.lookup_transfers(ids))
    by_id = {obj.id: obj.timestamp for obj in found}
    if len(by_id) != len(set(ids)):
        return events
    return [LedgerEventResult(id=e.id, status="EXISTS", timestamp=by_id[e.id]) for e in events]


async def outcomes(
    ledger: Ledger,
    batch: Batch,
    account_results: Sequence[tb.CreateAccountResult],
    transfer_results: Sequence[tb.CreateTransferResult],
) -> list[LedgerResult]:
    """One LedgerResult per command of `batch`, in order."""
    results = []
    produced_at = now()
    names = _TRANSFER_NAMES
    commands, account_offsets, transfer_offsets = (
        batch.commands,
        batch.account_offsets,
        batch.transfer_offsets,
    )
    events = 0
    for index, command in enumerate(commands):
        sent = command.transfers
        events += len(sent) or 1
        if events >= YIELD_EVENTS:
            events = 0
            await asyncio.sleep(0)  # let the ledger request in flight go on (see `take_turns`)
        if len(sent) == 1 and not command.accounts:
            # The common command, one transfer, without the general path's slicing.
            r = transfer_results[transfer_offsets[index]]
            transfers = [LedgerEventResult(id=sent[0].id, status=names[r.status], timestamp=r.timestamp)]
            accounts: list[LedgerEventResult] = []
            ok = transfers[0].status in SUCCESS
        else:
            accounts = _command_events(
                command.accounts, account_results, account_offsets[index], _ACCOUNT_NAMES
            )
            transfers = _command_events(sent, transfer_results, transfer_offsets[index], names)
            ok = all_succeeded(accounts) and all_succeeded(transfers)
        if not ok:
            # Only a command that did not succeed can be a retry to confirm or to explain.
            accounts, transfers = await _looked_up(ledger, command, accounts, transfers)
            ok = all_succeeded(accounts) and all_succeeded(transfers)
        results.append(
            LedgerResult(
                intent_id=command.intent_id,
                message_id=result_message_id(command),
                produced_at=produced_at,
                command_id=command.message_id,
                step=command.step,
                ok=ok,
                accounts=accounts,
                transfers=transfers,
            )
        )
    return results


async def _looked_up(
    ledger: Ledger,
    command: LedgerCommand,
    accounts: list[LedgerEventResult],
    transfers: list[LedgerEventResult],
) -> tuple[list[LedgerEventResult], list[LedgerEventResult]]:
    """A command's events with its committed chains confirmed and its burned ids explained."""
    if _retried_chain(accounts):
        accounts = await _confirm_chain(ledger, "accounts", accounts)
    if _retried_chain(transfers):
        transfers = await _confirm_chain(ledger, "transfers", transfers)
    for event in transfers:
        if event.status == ID_ALREADY_FAILED:
            return accounts, await first_failures(ledger, command.transfers, transfers)
    return accounts, transfers


def _retried_chain(events: list[LedgerEventResult]) -> bool:
    # The head's status first: the statuses are listed only for a chain whose head exists.
    return (
        len(events) > 1
        and events[0].status == EXISTS
        and is_committed_chain_retry([e.status for e in events])
    )


async def first_failures(
    ledger: Ledger, sent: Sequence[LedgerTransfer], events: list[LedgerEventResult]
) -> list[LedgerEventResult]:
    """`events` with `first_failure` set on each ID_ALREADY_FAILED: the transient status (one of the
    seven that burn an id) that explains it given the accounts as they are now, checked in the
    ledger's own order of precedence. A writer that applied a command and died before publishing its
    answer leaves only ID_ALREADY_FAILED for the retry; this gives the intent its reason back."""
    burned = [t for t, e in zip(sent, events, strict=True) if e.status == ID_ALREADY_FAILED]
    pending = {
        p.id: p for p in await ledger.lookup_transfers(sorted({t.pending_id for t in burned if t.pending_id}))
    }
    sides: dict[int, tuple[int, int]] = {}
    for t in burned:
        source = pending.get(t.pending_id) if t.pending_id else None
        debit = t.debit_account_id or (source.debit_account_id if source else 0)
        credit = t.credit_account_id or (source.credit_account_id if source else 0)
        sides[t.id] = (debit, credit)
    wanted = sorted({i for pair in sides.values() for i in pair if i})
    accounts = {a.id: a for a in await ledger.lookup_accounts(wanted)} if wanted else {}
    out = []
    for t, e in zip(sent, events, strict=True):
        if e.status != ID_ALREADY_FAILED:
            out.append(e)
            continue
        debit, credit = sides[t.id]
        first = _first_failure(
            accounts.get(debit), accounts.get(credit), bool(t.pending_id) and t.pending_id not in pending
        )
        out.append(LedgerEventResult(id=e.id, status=e.status, timestamp=e.timestamp, first_failure=first))
    return out


def _first_failure(debit: tb.Account | None, credit: tb.Account | None, pending_missing: bool) -> str | None:
    if pending_missing:
        return "PENDING_TRANSFER_NOT_FOUND"
    if debit is None:
        return "DEBIT_ACCOUNT_NOT_FOUND"
    if credit is None:
        return "CREDIT_ACCOUNT_NOT_FOUND"
    if debit.flags & tb.AccountFlags.CLOSED:
        return "DEBIT_ACCOUNT_ALREADY_CLOSED"
    if credit.flags & tb.AccountFlags.CLOSED:
        return "CREDIT_ACCOUNT_ALREADY_CLOSED"
    if debit.flags & tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS:
        return "EXCEEDS_CREDITS"
    if credit.flags & tb.AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS:
        return "EXCEEDS_DEBITS"
    return None


def _command_events(
    events: Sequence[LedgerAccount | LedgerTransfer],
    results: Sequence[tb.CreateAccountResult | tb.CreateTransferResult],
    start: int,
    names: dict[int, str],
) -> list[LedgerEventResult]:
    if not events:
        return []
    return [
        LedgerEventResult(id=e.id, status=names[r.status], timestamp=r.timestamp)
        for e, r in zip(events, results[start : start + len(events)], strict=True)
    ]


def result(
    command: LedgerCommand,
    *,
    ok: bool,
    accounts: list[LedgerEventResult] | None = None,
    transfers: list[LedgerEventResult] | None = None,
    error: str | None = None,
    produced_at: datetime | None = None,
) -> LedgerResult:
    return LedgerResult(
        intent_id=command.intent_id,
        message_id=result_message_id(command),
        produced_at=produced_at or now(),
        command_id=command.message_id,
        step=command.step,
        ok=ok,
        accounts=accounts or [],
        transfers=transfers or [],
        error=error,
    )
