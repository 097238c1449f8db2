"""What a settlement writes besides the intent (DESIGN §5): the wallet history of both parties and the
posted totals per account. Written in the transaction of the move to SETTLED, for intents that moved
in it, so each settlement is counted exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from pm_orchestrator import legs as legs_
from pm_orchestrator import queries as q
from pm_orchestrator.record import IntentRow
from pm_shared.db import Conn


def history_rows(intent: IntentRow, at: datetime) -> list[tuple[object, ...]]:
    """One row per user party: the payer's "out" (with the fees it paid), the payee's "in"."""
    rows: list[tuple[object, ...]] = []
    parties = (
        (intent.source, "out", intent.to_name, "source"),
        (intent.target, "in", intent.from_name, "target"),
    )
    for side, direction, counterparty, role in parties:
        if side.kind != "user" or side.id is None:
            continue
        rows.append(
            (
                "user",
                side.id,
                uuid.UUID(intent.id),
                intent.type,
                direction,
                intent.amount,
                intent.currency,
                intent.fees_paid_by(role),
                counterparty,
                intent.comment,
                intent.requires_monitoring,
                at,
            )
        )
    return rows


def balance_deltas(settled: Sequence[tuple[IntentRow, Sequence[legs_.Leg]]]) -> list[tuple[object, ...]]:
    """Debits and credits posted per account over `settled`, one row per account, in account order."""
    totals: dict[int, list[object]] = {}
    for intent, legs in settled:
        for leg in legs:
            for account, column in ((leg.debit, 5), (leg.credit, 6)):
                row = totals.setdefault(
                    account.id,
                    [
                        uuid.UUID(int=account.id),
                        account.owner_kind,
                        account.owner_id,
                        account.currency,
                        account.code,
                        0,
                        0,
                        None,
                    ],
                )
                row[column] = int(row[column]) + leg.amount  # type: ignore[call-overload]
                row[7] = uuid.UUID(intent.id)
    return [tuple(totals[key]) for key in sorted(totals)]


async def record(conn: Conn, settled: Sequence[tuple[IntentRow, Sequence[legs_.Leg]]], at: datetime) -> None:
    if not settled:
        return
    history = [row for intent, _ in settled for row in history_rows(intent, at)]
    if history:
        await conn.execute(q.INSERT_HISTORY, *map(list, zip(*history, strict=True)))
    balances = balance_deltas(settled)
    if balances:
        await conn.execute(q.ADD_BALANCES, *map(list, zip(*balances, strict=True)))
