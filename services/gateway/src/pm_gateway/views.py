"""Intents as the API shows them: read back (`pm_shared.intents.rows`) or just inserted."""

from __future__ import annotations

from datetime import datetime

from pm_client.api import CreateIntent, Intent, Links, TimelineEntry
from pm_shared.intents.rows import intent, load

__all__ = ["ACCEPTED", "intent", "load", "new_intent"]

ACCEPTED = "accepted by the gateway"
"""The reason of every intent's first timeline entry (written by queries.INSERT_INTENT)."""


def new_intent(intent_id: str, r: CreateIntent, created_at: datetime) -> Intent:
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
        created_at=created_at,
        updated_at=created_at,
        timeline=[TimelineEntry(at=created_at, state="CREATED", reason=ACCEPTED)],
        links=Links(self_=f"/v1/intents/{intent_id}"),
    )
