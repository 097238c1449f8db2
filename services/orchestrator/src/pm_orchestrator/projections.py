"""What a settlement writes besides the intent (DESIGN §5): the wallet history of both parties and the
posted totals per account. The rows are built here and written by the statement that moves the
intent to SETTLED (`states.move_many`), only for intents that did move, so each settlement is
counted exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pm_orchestrator import legs as legs_
from pm_orchestrator.record import IntentRow


@dataclass
class Projections:
    """Columns for the history rows and the posted legs of a batch's settlements."""

    history: list[tuple[object, ...]] = field(default_factory=list)
    postings: list[tuple[object, ...]] = field(default_factory=list)
    """(intent id, account id, owner kind, owner id, currency, code, debit, credit) per leg side."""

    def history_columns(self) -> list[list[object]]:
        return _columns(self.history, 12)

    def posting_columns(self) -> list[list[object]]:
        return _columns(self.postings, 8)


def _columns(rows: list[tuple[object, ...]], width: int) -> list[list[object]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


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


def posting_rows(intent: IntentRow, legs: Sequence[legs_.Leg]) -> list[tuple[object, ...]]:
    """Each leg as a debit of one account and a credit of another."""
    owner = uuid.UUID(intent.id)
    rows: list[tuple[object, ...]] = []
    for leg in legs:
        for account, debit, credit in ((leg.debit, leg.amount, 0), (leg.credit, 0, leg.amount)):
            rows.append(
                (
                    owner,
                    uuid.UUID(int=account.id),
                    account.owner_kind,
                    account.owner_id,
                    account.currency,
                    account.code,
                    debit,
                    credit,
                )
            )
    return rows


def of(settled: Sequence[tuple[IntentRow, Sequence[legs_.Leg]]], at: datetime) -> Projections:
    out = Projections()
    for intent, legs in settled:
        out.history.extend(history_rows(intent, at))
        out.postings.extend(posting_rows(intent, legs))
    return out
