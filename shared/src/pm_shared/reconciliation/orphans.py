"""Which ledger transfers PM accounts for: what the orphan sweep asks of every transfer it reads.

A transfer is accounted for when it is
- one of an intent's transfers (`user_data_128` names the intent, and its id is one the intent's legs,
  their post or void, or their corrections make);
- one of a merchant's account closings or reopenings (codes 40 and 41, `pm_shared.merchants.closing`);
- a correcting transfer of a repair an operator applied (`pm.reconciliation_repair`);
- reversed by a repair (its reversal, `reversal_id`, is in the ledger).
Anything else was written to the ledger behind PM's back: an orphan.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import tigerbeetle as tb

from pm_shared.db import Conn
from pm_shared.intents.legs import LegError
from pm_shared.intents.record import IntentRow
from pm_shared.ledger import ids
from pm_shared.ledger.api import Ledger
from pm_shared.merchants.closing import CLOSE_CODE, REOPEN_CODE
from pm_shared.reconciliation import checker, kinds, queries, verify
from pm_shared.reconciliation.verify import Finding

_OUTSIDE_INTENTS = frozenset({CLOSE_CODE, REOPEN_CODE})


def reversal_id(transfer_id: int) -> int:
    """The id of the correcting transfer that reverses an orphan."""
    return ids.transfer_id(f"orphan-{transfer_id:032x}", "reversal")


def _intent_of(transfer: tb.Transfer) -> str | None:
    return str(uuid.UUID(int=transfer.user_data_128)) if transfer.user_data_128 else None


async def orphans(conn: Conn, ledger: Ledger, transfers: Sequence[tb.Transfer]) -> list[tb.Transfer]:
    """The transfers of `transfers` PM does not account for."""
    candidates = [t for t in transfers if t.code not in _OUTSIDE_INTENTS]
    if not candidates:
        return []
    intent_ids = sorted({i for t in candidates if (i := _intent_of(t)) is not None})
    expected: set[int] = set()
    for intent in await checker.load(conn, intent_ids):
        expected.update(_ids_of(intent))
    repaired = {
        int(r["id"])
        for r in await conn.fetch(queries.SELECT_REPAIR_TRANSFER_IDS, [str(t.id) for t in candidates])
    }
    left = [t for t in candidates if t.id not in expected and t.id not in repaired]
    if not left:
        return []
    reversed_ = set(await checker.lookup(ledger, [reversal_id(t.id) for t in left]))
    return [t for t in left if reversal_id(t.id) not in reversed_]


def _ids_of(intent: IntentRow) -> list[int]:
    try:
        return verify.expected(intent).all_ids()
    except LegError:
        return []


def finding(transfer: tb.Transfer) -> Finding:
    return Finding(
        kinds.ORPHAN_TRANSFER,
        str(transfer.id),
        _intent_of(transfer),
        {
            "transferId": str(transfer.id),
            "debitAccountId": str(transfer.debit_account_id),
            "creditAccountId": str(transfer.credit_account_id),
            "amount": transfer.amount,
            "ledger": transfer.ledger,
            "code": transfer.code,
            "flags": int(transfer.flags),
            "timestamp": transfer.timestamp,
        },
    )
