"""Settled intents for the reconciliation benchmark, made in bulk: the rows the saga would have left in
`pm.intent` and the transfers it would have left in the ledger, without running the saga (which would
take longer than the measurement).

Each intent is a P2P between two of `USERS` funded wallets; every second one carries a PRE fee (a
second pending leg), as the saga benchmark's fee rules do. In the ledger each intent is one linked
chain: its authorizations, then their posts with the exact amounts, ids from `pm_shared.intents.legs` —
so what the reconciler recomputes is there, as after a real settlement. All of them changed on `day`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
import tigerbeetle as tb

from pm_shared.db import Conn
from pm_shared.intents import legs
from pm_shared.intents.record import IntentRow, Side, StoredFee
from pm_shared.ledger import chart
from pm_shared.ledger.api import BATCH_MAX, Ledger

USERS = 2_000
AMOUNT = 1_000
FEE = StoredFee(
    rule_id="bench-pre", rule_version=1, amount=10, currency="THB", timing="PRE", fee_account_code=10
)
FUNDING = 10**12
KEY_ID = "pk_" + "0" * 24
"""The front door's key (migration 0015): there already, and it never signs."""
_FEES = msgspec.json.encode([FEE]).decode()

_INSERT = """
INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency, source,
                       target, fees, route, created_at, updated_at)
SELECT id, $2, id::text, '\\x00'::bytea, 'P2P', 'SETTLED', $3, 'THB', src, dst, fees,
       ARRAY['validate', 'authorize', 'settle'], at, at
FROM unnest($1::uuid[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::timestamptz[]) AS t(id, src, dst, fees, at)
"""


def _users() -> list[str]:
    return [f"bench-recon-{i}" for i in range(USERS)]


async def _accounts(ledger: Ledger, users: Sequence[str]) -> None:
    thb = chart.ledger_of("THB")
    wanted = [legs.wallet(u, "THB") for u in users]
    operators = [
        legs.operator(chart.Code.OPERATOR_EQUITY, "THB"),
        legs.operator(chart.Code.FEE_REVENUE, "THB"),
    ]
    accounts = [
        tb.Account(id=a.id, ledger=thb, code=int(a.code), flags=chart.FLAGS[chart.Code(a.code)])
        for a in (*wanted, *operators)
    ]
    for start in range(0, len(accounts), BATCH_MAX):
        await ledger.create_accounts(accounts[start : start + BATCH_MAX])
    funding = [
        tb.Transfer(id=tb.id(), debit_account_id=operators[0].id, credit_account_id=w.id, amount=FUNDING,
                    ledger=thb, code=2)
        for w in wanted
    ]  # fmt: skip
    for start in range(0, len(funding), BATCH_MAX):
        await ledger.create_transfers(funding[start : start + BATCH_MAX])


def _engine(t: object) -> tb.Transfer:
    from pm_shared.messages import LedgerTransfer

    assert isinstance(t, LedgerTransfer)
    return tb.Transfer(
        id=t.id, debit_account_id=t.debit_account_id, credit_account_id=t.credit_account_id, amount=t.amount,
        pending_id=t.pending_id, user_data_128=t.user_data_128, ledger=t.ledger, code=t.code,
        flags=tb.TransferFlags(t.flags),
    )  # fmt: skip


def _intent(intent_id: str, payer: str, payee: str, fee: bool, at: datetime) -> IntentRow:
    return IntentRow(
        id=intent_id, type="P2P", state="SETTLED", step=None, channel=None, route=None, amount=AMOUNT,
        currency="THB", source=Side("user", payer), target=Side("user", payee), from_name=None, to_name=None,
        comment=None, requires_monitoring=False, metadata={}, fees=(FEE,) if fee else (), created_at=at,
        updated_at=at,
    )  # fmt: skip


async def seed(
    conn: Conn, ledger: Ledger, intents: int, day: datetime, batch: int = 5_000
) -> tuple[list[str], list[int]]:
    """`intents` settled intents changed on `day` (UTC midnight), in PostgreSQL and the ledger: their
    ids, and the ids of the transfers a check of a settled intent looks up first (its posts and direct
    legs: `verify.Expected.ids`)."""
    users = _users()
    await _accounts(ledger, users)
    made: list[str] = []
    transfer_ids: list[int] = []
    for start in range(0, intents, batch):
        rows = []
        batches: list[list[tb.Transfer]] = [[]]
        for n in range(start, min(intents, start + batch)):
            intent_id = str(uuid.uuid4())
            payer, payee = users[n % USERS], users[(n * 7 + 1) % USERS]
            at = day + timedelta(microseconds=n * 400_000 % 86_400_000_000)
            row = _intent(intent_id, payer, payee, n % 2 == 0, at)
            all_legs = legs.legs(row)
            # Its authorizations (one chain), then their posts (another): never split across requests.
            made_here = [
                _engine(t) for t in legs.authorize(row, all_legs, timeout_s=0) + legs.settle(row, all_legs)
            ]
            if len(batches[-1]) + len(made_here) > BATCH_MAX:
                batches.append([])
            batches[-1] += made_here
            transfer_ids += [t.id for t in made_here if t.flags & tb.TransferFlags.POST_PENDING_TRANSFER]
            rows.append((intent_id, payer, payee, n % 2 == 0, at))
            made.append(intent_id)
        await conn.execute(
            _INSERT,
            [uuid.UUID(r[0]) for r in rows],
            KEY_ID,
            AMOUNT,
            [json.dumps({"kind": "user", "id": r[1]}) for r in rows],
            [json.dumps({"kind": "user", "id": r[2]}) for r in rows],
            [_FEES if r[3] else "[]" for r in rows],
            [r[4] for r in rows],
        )
        for request in batches:
            results = await ledger.create_transfers(request)
            failed = [r for r in results if r.status != tb.CreateTransferStatus.CREATED]
            if failed:
                raise RuntimeError(f"seeding the ledger failed: {failed[:3]}")
    return made, transfer_ids
