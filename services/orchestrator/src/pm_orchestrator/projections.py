"""What a settlement writes besides the intent: the wallet history of both parties and the posted
totals per account. The rows are built here and written by the statement that moves the intent to
SETTLED (`store.move_many`), only for intents that did move, so each settlement is counted exactly
once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from pm_shared.intents import legs as legs_
from pm_shared.intents.record import IntentRow


class HistoryRow(msgspec.Struct, frozen=True):
    """One row of a party's wallet history (pm.tx_history)."""

    owner_kind: str
    owner_id: str
    intent_id: uuid.UUID
    type: str
    direction: str
    """"out" for the payer, "in" for the payee."""
    amount: int
    currency: str
    fee: int
    counterparty_name: str | None
    comment: str | None
    requires_monitoring: bool
    at: datetime
    original_intent_id: uuid.UUID | None = None
    """A refund's original (the charge or withdrawal it gives back), shown beside it in the history."""


class PostingRow(msgspec.Struct, frozen=True):
    """One side of a posted leg, added to its account's totals (pm.account_balance)."""

    intent_id: uuid.UUID
    account_id: uuid.UUID
    owner_kind: str
    owner_id: str
    currency: str
    code: int
    debit: int
    credit: int


@dataclass
class Projections:
    """The history rows and the posted leg sides of a batch's settlements."""

    history: list[HistoryRow] = field(default_factory=list)
    postings: list[PostingRow] = field(default_factory=list)


def history_rows(intent: IntentRow, at: datetime) -> list[HistoryRow]:
    """One row per user party: the payer's "out" (with the fees it paid), the payee's "in"."""
    rows: list[HistoryRow] = []
    parties = (
        (intent.source, "out", intent.to_name, "source"),
        (intent.target, "in", intent.from_name, "target"),
    )
    fx = intent.exchange
    original = uuid.UUID(intent.original_intent_id) if intent.original_intent_id else None
    for side, direction, counterparty, role in parties:
        if side.kind != "user" or side.id is None:
            continue
        # An exchange: the principal out with its spread as a fee (as a payment's amount and fees
        # leave a wallet), the bought amount in.
        amount, currency, fee = intent.amount, intent.currency, intent.fees_paid_by(role)
        if fx is not None and direction == "in":
            amount, currency = fx.buy_amount, fx.buy_currency
        elif fx is not None:
            amount, fee = fx.principal, fee + fx.spread
        rows.append(
            HistoryRow(
                owner_kind="user",
                owner_id=side.id,
                intent_id=uuid.UUID(intent.id),
                type=intent.type,
                direction=direction,
                amount=amount,
                currency=currency,
                fee=fee,
                counterparty_name=counterparty,
                comment=intent.comment,
                requires_monitoring=intent.requires_monitoring,
                at=at,
                original_intent_id=original,
            )
        )
    return rows


def posting_rows(intent: IntentRow, legs: Sequence[legs_.Leg]) -> list[PostingRow]:
    """Each leg as a debit of one account and a credit of another."""
    owner = uuid.UUID(intent.id)
    rows: list[PostingRow] = []
    for leg in legs:
        for account, debit, credit in ((leg.debit, leg.amount, 0), (leg.credit, 0, leg.amount)):
            rows.append(
                PostingRow(
                    intent_id=owner,
                    account_id=uuid.UUID(int=account.id),
                    owner_kind=account.owner_kind,
                    owner_id=account.owner_id,
                    currency=account.currency,
                    code=account.code,
                    debit=debit,
                    credit=credit,
                )
            )
    return rows


def of(settled: Sequence[tuple[IntentRow, Sequence[legs_.Leg]]], at: datetime) -> Projections:
    out = Projections()
    for intent, legs in settled:
        out.history.extend(history_rows(intent, at))
        out.postings.extend(posting_rows(intent, legs))
    return out
