"""Intents as the API shows them (`pm_client.api.Intent`): read back from `pm.intent` and its timeline,
or just inserted. `pm intents show` reads them the same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from pm_client.api import CreateIntent, Exchange, Fee, Intent, Leg, Links, Party, Payment, TimelineEntry
from pm_gateway import queries
from pm_shared.db import Conn

__all__ = ["ACCEPTED", "intent", "load", "new_intent"]

ACCEPTED = "accepted by the gateway"
"""The reason of every intent's first timeline entry (written by queries.INSERT_INTENTS)."""


def new_intent(
    intent_id: str, r: CreateIntent, created_at: datetime, exchange: Exchange | None = None
) -> Intent:
    """A just-inserted intent, as `intent()` would read it back (no second round trip)."""
    return Intent(
        id=intent_id,
        status="CREATED",
        type=r.type,
        amount=r.amount,
        currency=r.currency,
        from_=r.from_,
        to=r.to,
        from_name=r.from_name,
        to_name=r.to_name,
        comment=r.comment,
        requires_monitoring=r.requires_monitoring,
        metadata=dict(r.metadata),
        miniapp_id=r.miniapp_id,
        exchange=exchange,
        original_intent_id=str(r.original_intent_id) if r.original_intent_id is not None else None,
        created_at=created_at,
        updated_at=created_at,
        timeline=[TimelineEntry(at=created_at, state="CREATED", reason=ACCEPTED)],
        links=Links(self_=f"/v1/intents/{intent_id}"),
    )


_party = msgspec.json.Decoder(Party)
_fees = msgspec.json.Decoder(list[Fee])
_legs = msgspec.json.Decoder(list[Leg])
_metadata = msgspec.json.Decoder(dict[str, str])
_payment = msgspec.json.Decoder(Payment)
_exchange = msgspec.json.Decoder(Exchange)


def _json(value: Any) -> bytes:
    # asyncpg returns jsonb as text unless a codec is set; accept both.
    return value.encode() if isinstance(value, str) else bytes(value)


def intent(row: asyncpg.Record, timeline: Sequence[asyncpg.Record] = ()) -> Intent:
    intent_id = str(row["id"])
    return Intent(
        id=intent_id,
        status=row["state"],
        type=row["type"],
        amount=row["amount"],
        currency=row["currency"],
        from_=_party.decode(_json(row["source"])),
        to=_party.decode(_json(row["target"])),
        fees=_fees.decode(_json(row["fees"])),
        failure_code=row["failure_code"],
        from_name=row["from_name"],
        to_name=row["to_name"],
        comment=row["comment"],
        requires_monitoring=row["requires_monitoring"],
        metadata=_metadata.decode(_json(row["metadata"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        legs=_legs.decode(_json(row["legs"])),
        payment=_payment.decode(_json(row["payment"])) if row["payment"] is not None else None,
        miniapp_id=row["miniapp_id"],
        exchange=_exchange.decode(_json(row["exchange"])) if row["exchange"] is not None else None,
        original_intent_id=str(row["original_intent_id"]) if row["original_intent_id"] is not None else None,
        timeline=[
            TimelineEntry(at=t["at"], state=t["to_state"], previous=t["from_state"], reason=t["reason"])
            for t in timeline
        ],
        links=Links(self_=f"/v1/intents/{intent_id}"),
    )


async def load(conn: Conn, intent_id: Any) -> Intent | None:
    """The intent with its timeline, or None."""
    row = await conn.fetchrow(queries.SELECT_INTENT, intent_id)
    if row is None:
        return None
    return intent(row, await conn.fetch(queries.SELECT_TIMELINE, intent_id))
