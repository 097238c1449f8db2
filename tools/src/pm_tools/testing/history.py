"""Historical intents for reconciliation tests: P2P payments recorded as an older PM did.

An older PM's client (TigerBeetle < 0.16) posted a pending transfer with amount 0, meaning "post the
full amount". Against a cluster ≥ 0.16, amount 0 posts nothing and releases the reservation
(docs/reconciliation.md). `zero_posted` makes such intents for real: the intent row SETTLED, its
timeline, the projection as the saga wrote it (the whole amount counted as moved), and in the ledger
the authorization and a post of amount 0. `fully_posted` makes the same with a correct post, so a test
can check that only the broken ones are found.

Test support only.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

import tigerbeetle as tb

from pm_shared import db
from pm_shared.intents import legs
from pm_shared.ledger import chart, ids
from pm_shared.ledger.api import Ledger

_BALANCE = """
INSERT INTO pm.account_balance AS b
    (account_id, owner_kind, owner_id, currency, code, debits_posted, credits_posted)
VALUES ($1, 'user', $2, 'THB', $3, $4, $5)
ON CONFLICT (account_id) DO UPDATE
SET debits_posted = b.debits_posted + EXCLUDED.debits_posted,
    credits_posted = b.credits_posted + EXCLUDED.credits_posted
"""


async def _intent(conn: db.Conn, key_id: str, payer: str, payee: str, amount: int, at: datetime) -> str:
    intent_id = str(uuid.uuid4())
    await conn.execute(
        """INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
               source, target, route, created_at, updated_at)
           VALUES ($1, $2, $3, $4, 'P2P', 'SETTLED', $5, 'THB', $6::jsonb, $7::jsonb,
                   ARRAY['validate', 'authorize', 'settle'], $8, $8)""",
        uuid.UUID(intent_id),
        key_id,
        f"history-{intent_id}",
        hashlib.sha256(intent_id.encode()).digest(),
        amount,
        json.dumps({"kind": "user", "id": payer}),
        json.dumps({"kind": "user", "id": payee}),
        at,
    )
    await conn.execute(
        "INSERT INTO pm.intent_event (intent_id, from_state, to_state, at) VALUES"
        " ($1, NULL, 'CREATED', $2), ($1, 'CREATED', 'AUTHORIZED', $2), ($1, 'AUTHORIZED', 'SETTLED', $2)",
        uuid.UUID(intent_id),
        at,
    )
    for owner, debit, credit in ((payer, amount, 0), (payee, 0, amount)):
        account = legs.wallet(owner, "THB")
        await conn.execute(
            _BALANCE, uuid.UUID(int=account.id), owner, int(chart.Code.USER_WALLET), debit, credit
        )
    return intent_id


async def _post(ledger: Ledger, intent_id: str, payer: str, payee: str, amount: int, posted: int) -> None:
    hold = ids.transfer_id(intent_id, legs.PRINCIPAL)
    code = legs.TRANSFER_CODES["P2P"]
    thb = chart.ledger_of("THB")
    made = await ledger.create_transfers(
        [
            tb.Transfer(
                id=hold,
                debit_account_id=legs.wallet(payer, "THB").id,
                credit_account_id=legs.wallet(payee, "THB").id,
                amount=amount,
                user_data_128=uuid.UUID(intent_id).int,
                ledger=thb,
                code=code,
                flags=tb.TransferFlags.PENDING | tb.TransferFlags.LINKED,
            ),
            tb.Transfer(
                id=ids.transfer_id(intent_id, legs.PRINCIPAL + ":post"),
                pending_id=hold,
                amount=posted,
                user_data_128=uuid.UUID(intent_id).int,
                ledger=thb,
                code=code,
                flags=tb.TransferFlags.POST_PENDING_TRANSFER,
            ),
        ]
    )
    statuses = [r.status for r in made]
    assert statuses == [tb.CreateTransferStatus.CREATED] * 2, statuses


async def zero_posted(
    conn: db.Conn, ledger: Ledger, key_id: str, payer: str, payee: str, amount: int, at: datetime
) -> str:
    """A settled P2P whose authorization was posted with amount 0 (nothing moved); its id."""
    intent_id = await _intent(conn, key_id, payer, payee, amount, at)
    await _post(ledger, intent_id, payer, payee, amount, 0)
    return intent_id


async def fully_posted(
    conn: db.Conn, ledger: Ledger, key_id: str, payer: str, payee: str, amount: int, at: datetime
) -> str:
    """The same payment, posted with its amount (as it should have been); its id."""
    intent_id = await _intent(conn, key_id, payer, payee, amount, at)
    await _post(ledger, intent_id, payer, payee, amount, amount)
    return intent_id
