"""Repairs: the correcting transfers that make the ledger agree with PM again, never an edit.

`propose` works out, for one alert, the transfers that fix it and keeps them
(`pm.reconciliation_repair`, status PROPOSED): nothing moves. `apply` — only on an operator's word
(`pm recon repair ALERT --yes`) — sends them through the ledger-writer like every ledger write
(a `LedgerCommand` of step `REPAIR_STEP`), waits until the ledger has them, marks the repair APPLIED
and logs who applied it on the alert. Then the alert's subject is checked again and the alert
resolves.

What can be proposed (anything else needs an operator's judgement, and `propose` says so):
- a settled leg that posted less than its authorization (`posted_zero`, the TigerBeetle 0.16 amount=0
  case; `amount_mismatch` short of it) or a direct leg missing (`missing_transfer`): per leg, one
  transfer of the difference from the leg's debit to its credit account, code `CORRECTION_CODE`,
  `user_data_128` the intent's, `user_data_64` when the leg was posted (the event time);
- an orphan transfer: its reversal (credit → debit, same amount; a pending orphan is voided instead).

The ids derive from the intent and leg (or the orphan), so applying twice sends the same transfers and
the ledger answers EXISTS.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import asyncpg
import msgspec
import tigerbeetle as tb

from pm_shared import messages
from pm_shared.db import Conn
from pm_shared.ledger.api import Ledger
from pm_shared.reconciliation import alerts, checker, kinds, orphans, queries, verify
from pm_shared.reconciliation.alerts import Alert
from pm_shared.streams import Publisher
from pm_shared.streams.names import LEDGER_COMMANDS

REPAIR_STEP = "reconciliation_repair"
POLL_S = 0.05
_LINKED = int(tb.TransferFlags.LINKED)
_PENDING = int(tb.TransferFlags.PENDING)
_VOID = int(tb.TransferFlags.VOID_PENDING_TRANSFER)
_transfers = msgspec.json.Decoder(list[messages.LedgerTransfer])


class NothingToRepairError(Exception):
    """No correcting transfer can fix this alert (it needs an operator's judgement), or it is fixed."""


class RepairNotAppliedError(Exception):
    """The ledger-writer did not write the repair in time (a refusal is in the orchestrator's log)."""


@dataclass(frozen=True)
class Proposal:
    alert_id: int
    status: str
    transfers: list[messages.LedgerTransfer]


def _chain(transfers: list[messages.LedgerTransfer]) -> list[messages.LedgerTransfer]:
    """All or nothing: every transfer linked to the next."""
    return [
        msgspec.structs.replace(t, flags=t.flags | _LINKED) if i < len(transfers) - 1 else t
        for i, t in enumerate(transfers)
    ]


async def _intent_fix(conn: Conn, ledger: Ledger, alert: Alert) -> list[messages.LedgerTransfer]:
    assert alert.intent_id is not None
    result = await checker.check(ledger, await checker.load(conn, [alert.intent_id]))
    user_data = uuid.UUID(alert.intent_id).int
    return [
        messages.LedgerTransfer(
            id=verify.correction_id(alert.intent_id, s.leg),
            debit_account_id=s.debit,
            credit_account_id=s.credit,
            amount=s.amount,
            user_data_128=user_data,
            user_data_64=s.at,
            ledger=s.ledger,
            code=verify.CORRECTION_CODE,
        )
        for f in result.findings
        if f.kind == alert.kind
        for s in f.shortfalls
    ]


async def _orphan_fix(conn: Conn, ledger: Ledger, alert: Alert) -> list[messages.LedgerTransfer]:
    assert alert.subject is not None
    found = await ledger.lookup_transfers([int(alert.subject)])
    if not found or not await orphans.orphans(conn, ledger, found):
        return []
    t = found[0]
    if int(t.flags) & _PENDING:
        return [
            messages.LedgerTransfer(
                id=orphans.reversal_id(t.id), pending_id=t.id, ledger=t.ledger, code=t.code, flags=_VOID
            )
        ]
    return [
        messages.LedgerTransfer(
            id=orphans.reversal_id(t.id),
            debit_account_id=t.credit_account_id,
            credit_account_id=t.debit_account_id,
            amount=t.amount,
            user_data_128=t.user_data_128,
            user_data_64=t.timestamp,
            ledger=t.ledger,
            code=verify.CORRECTION_CODE,
        )
    ]


async def propose(conn: Conn, ledger: Ledger, alert_id: int) -> Proposal:
    """The repair of `alert_id`, worked out now and kept (an applied one is shown as it was).
    Raises AlertNotFoundError, or NothingToRepairError."""
    existing = await conn.fetchrow(queries.SELECT_REPAIR, alert_id)
    if existing is not None and existing["status"] != "PROPOSED":
        return proposal_of(existing)
    alert = await alerts.get(conn, alert_id)
    if alert.kind in (kinds.POSTED_ZERO, kinds.AMOUNT_MISMATCH, kinds.MISSING_TRANSFER) and alert.intent_id:
        transfers = await _intent_fix(conn, ledger, alert)
    elif alert.kind == kinds.ORPHAN_TRANSFER:
        transfers = await _orphan_fix(conn, ledger, alert)
    else:
        raise NothingToRepairError(
            f"alert {alert_id} ({alert.kind}) has no correcting transfer: review it by hand"
        )
    if not transfers:
        raise NothingToRepairError(
            f"alert {alert_id} ({alert.kind}): the ledger already agrees; nothing to add"
        )
    chained = _chain(transfers)
    row = await conn.fetchrow(
        queries.PROPOSE_REPAIR, alert_id, alert.intent_id, msgspec.json.encode(chained).decode()
    )
    assert row is not None
    return Proposal(alert_id, row["status"], chained)


def _decode(raw: object) -> list[messages.LedgerTransfer]:
    return _transfers.decode(raw.encode() if isinstance(raw, str) else json.dumps(raw).encode())


def proposal_of(row: asyncpg.Record) -> Proposal:
    """A `pm.reconciliation_repair` row as a Proposal."""
    return Proposal(row["alert_id"], row["status"], _decode(row["transfers"]))


async def apply(
    conn: Conn, ledger: Ledger, publisher: Publisher, alert_id: int, actor: str, wait_s: float = 10.0
) -> Proposal:
    """Send the proposed repair of `alert_id` through the ledger-writer and wait until the ledger has
    it. Raises NothingToRepairError (none proposed) or RepairNotAppliedError."""
    row = await conn.fetchrow(queries.BEGIN_APPLY, alert_id, actor)
    if row is None:
        existing = await conn.fetchrow(queries.SELECT_REPAIR, alert_id)
        if existing is not None and existing["status"] == "APPLIED":
            return proposal_of(existing)
        raise NothingToRepairError(f"alert {alert_id}: no repair proposed (run it with --dry-run first)")
    transfers = _decode(row["transfers"])
    ids = [t.id for t in transfers]
    if len(await ledger.lookup_transfers(ids)) < len(ids):
        await publisher.publish(
            LEDGER_COMMANDS,
            messages.LedgerCommand(
                intent_id=f"repair:{alert_id}",
                message_id=f"{REPAIR_STEP}:{alert_id}",
                produced_at=messages.now(),
                step=REPAIR_STEP,
                transfers=transfers,
            ),
        )
        deadline = time.monotonic() + wait_s
        while len(await ledger.lookup_transfers(ids)) < len(ids):
            if time.monotonic() > deadline:
                raise RepairNotAppliedError(
                    f"alert {alert_id}: the ledger-writer did not write the repair within {wait_s:g} s"
                    " (a refusal is logged by the orchestrator); run it again to retry"
                )
            await asyncio.sleep(POLL_S)
    async with conn.transaction():
        await conn.fetchval(queries.FINISH_APPLY, alert_id)
        await conn.execute(
            queries.INSERT_ACTIONS,
            [alert_id],
            "repaired",
            actor,
            None,
            json.dumps({"transfers": [str(i) for i in ids]}),
        )
    return Proposal(alert_id, "APPLIED", transfers)
