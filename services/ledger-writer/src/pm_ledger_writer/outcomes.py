"""Each command's result, read out of a request's dense results (one per event, in order)."""

from __future__ import annotations

from collections.abc import Sequence

import tigerbeetle as tb

from pm_ledger_writer.packing import Batch, all_succeeded, is_committed_chain_retry, result_message_id
from pm_shared.ledger.api import Ledger
from pm_shared.messages import LedgerCommand, LedgerEventResult, LedgerResult, now


def _events(
    ids: Sequence[int], results: Sequence[tb.CreateAccountResult | tb.CreateTransferResult]
) -> list[LedgerEventResult]:
    return [
        LedgerEventResult(id=i, status=r.status.name, timestamp=r.timestamp)
        for i, r in zip(ids, results, strict=True)
    ]


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
    for index, command in enumerate(batch.commands):
        a0, t0 = batch.account_offsets[index], batch.transfer_offsets[index]
        accounts = _events([a.id for a in command.accounts], account_results[a0 : a0 + len(command.accounts)])
        transfers = _events(
            [t.id for t in command.transfers], transfer_results[t0 : t0 + len(command.transfers)]
        )
        if is_committed_chain_retry([e.status for e in accounts]):
            accounts = await _confirm_chain(ledger, "accounts", accounts)
        if is_committed_chain_retry([e.status for e in transfers]):
            transfers = await _confirm_chain(ledger, "transfers", transfers)
        results.append(
            result(
                command,
                accounts=accounts,
                transfers=transfers,
                ok=all_succeeded([e.status for e in accounts + transfers]),
            )
        )
    return results


def result(
    command: LedgerCommand,
    *,
    ok: bool,
    accounts: list[LedgerEventResult] | None = None,
    transfers: list[LedgerEventResult] | None = None,
    error: str | None = None,
) -> LedgerResult:
    return LedgerResult(
        intent_id=command.intent_id,
        message_id=result_message_id(command),
        produced_at=now(),
        command_id=command.message_id,
        step=command.step,
        ok=ok,
        accounts=accounts or [],
        transfers=transfers or [],
        error=error,
    )
