"""An intent as the saga reads it from `pm.intent`: the request, and how far it has come."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from pm_shared.fees import AppliedFee


class StoredFee(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A fee as stamped on `pm.intent.fees`: the API's `Fee` plus who pays it and where it goes."""

    rule_id: str
    rule_version: int
    amount: int
    currency: str
    timing: str
    payer: str = "source"
    fee_account_code: int = 10

    @classmethod
    def of(cls, fee: AppliedFee) -> StoredFee:
        return cls(
            rule_id=fee.rule_id,
            rule_version=fee.rule_version,
            amount=fee.amount,
            currency=fee.currency,
            timing=fee.timing,
            payer=fee.payer,
            fee_account_code=fee.fee_account_code,
        )


class Exchange(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An FX_EXCHANGE's quote as stamped on `pm.intent.exchange`: the intent's amount leaves the payer's
    wallet in its currency (`principal` exchanged, `spread` to fee revenue); `buy_amount` arrives."""

    quote_id: str
    buy_currency: str
    buy_amount: int
    principal: int
    spread: int


_fees = msgspec.json.Decoder(list[StoredFee])
_exchange = msgspec.json.Decoder(Exchange)
_object = msgspec.json.Decoder(dict[str, Any])
_metadata = msgspec.json.Decoder(dict[str, str])


def _json(value: Any) -> bytes:
    # asyncpg returns jsonb as text unless a codec is set.
    return value.encode() if isinstance(value, str) else bytes(value)


@dataclass(frozen=True)
class Side:
    """One party of an intent: its kind ("user", "operator", "promptpay", …) and, for a user, its id."""

    kind: str
    id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IntentRow:
    id: str
    type: str
    state: str
    step: str | None
    channel: str | None
    route: tuple[str, ...] | None
    amount: int
    currency: str
    source: Side
    target: Side
    from_name: str | None
    to_name: str | None
    comment: str | None
    requires_monitoring: bool
    metadata: dict[str, str]
    fees: tuple[StoredFee, ...]
    created_at: datetime
    updated_at: datetime
    payment: dict[str, Any] | None = None
    """What the payer is shown (`pm.intent.payment`: an SBP QR link), once a PSP gave it."""
    exchange: Exchange | None = None
    """An FX_EXCHANGE's quote: what it buys, and in which currency."""
    original_intent_id: str | None = None
    """A REFUND's original: the intent it gives money back for (None when the row was read without
    the column)."""

    @property
    def currencies(self) -> tuple[str, ...]:
        """The currencies it moves: its own, and an exchange's other."""
        return (self.currency,) if self.exchange is None else (self.currency, self.exchange.buy_currency)

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> IntentRow:
        route = row["route"]
        return cls(
            id=str(row["id"]),
            type=row["type"],
            state=row["state"],
            step=row["step"],
            channel=row["channel"],
            route=tuple(route) if route is not None else None,
            amount=row["amount"],
            currency=row["currency"].strip(),
            source=_side(row["source"]),
            target=_side(row["target"]),
            from_name=row["from_name"],
            to_name=row["to_name"],
            comment=row["comment"],
            requires_monitoring=row["requires_monitoring"],
            metadata=_metadata.decode(_json(row["metadata"])),
            fees=tuple(_fees.decode(_json(row["fees"]))),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            payment=_object.decode(_json(row["payment"])) if row["payment"] is not None else None,
            exchange=_exchange.decode(_json(row["exchange"])) if row["exchange"] is not None else None,
            original_intent_id=_text(row.get("original_intent_id")),
        )

    def fees_paid_by(self, side: str) -> int:
        return sum(f.amount for f in self.fees if f.payer == side)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _side(value: Any) -> Side:
    data = _object.decode(_json(value))
    kind = str(data.get("kind", ""))
    owner = data.get("id")
    return Side(kind=kind, id=str(owner) if owner is not None else None, details=data)
