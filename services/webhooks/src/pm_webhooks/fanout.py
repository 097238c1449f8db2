"""The fan-out: every intent state change on `pm:events` (consumer group `webhooks`) becomes one
`pm.webhook_delivery` per event and per ENABLED endpoint of the merchant subscribed to it.

A batch's deliveries are inserted in one statement, and the consumer acks the batch only once it has
committed: a crash before loses nothing (the entries are delivered again), a redelivery inserts
nothing twice (`webhook_id` is made from the intent and the event type; the row is unique per
endpoint and `webhook_id`). Then the dispatcher is woken, so a new delivery is attempted at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
from prometheus_client import Counter

from pm_client.api import TERMINAL_STATES
from pm_shared.db import Conn, Pool
from pm_shared.messages import IntentStateChanged
from pm_shared.streams import Delivery
from pm_webhooks import payloads, queries

log = logging.getLogger(__name__)

DELIVERIES_MADE = Counter(
    "pm_webhooks_deliveries_created_total", "Deliveries made by the fan-out, by event type.", ["event_type"]
)


@dataclass(frozen=True)
class Event:
    """One event of one intent, for its merchant."""

    intent_id: str
    merchant_id: str
    event_type: str
    body: bytes


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _relevant(change: IntentStateChanged) -> bool:
    """Whether a state change may make an event: an end, or a charge's first move."""
    if change.state in TERMINAL_STATES:
        return True
    return change.previous == "CREATED" and change.state != "CREATED"


class FanOut:
    def __init__(self, pool: Pool, wake: Callable[[], None]) -> None:
        self.pool = pool
        self.wake = wake

    async def on_events(self, deliveries: Sequence[Delivery[IntentStateChanged]]) -> None:
        changes = [d.message for d in deliveries if _relevant(d.message) and _is_uuid(d.message.intent_id)]
        if not changes:
            return
        async with self.pool.acquire() as conn:
            events = await self.events(conn, changes)
            made = await self.insert(conn, events) if events else 0
        if made:
            self.wake()

    async def events(self, conn: Conn, changes: list[IntentStateChanged]) -> list[Event]:
        """The events of `changes` whose intent concerns a merchant."""
        rows = {
            str(r["id"]): r for r in await conn.fetch(queries.SELECT_INTENTS, [c.intent_id for c in changes])
        }
        asked = {
            request_id: intent_id
            for intent_id, row in rows.items()
            if (request_id := payloads.requested_by(row)) and _is_uuid(request_id)
        }
        requests: dict[str, str] = {}
        if asked:
            found = await conn.fetch(queries.SELECT_PAYMENT_REQUESTS, list(asked), list(asked.values()))
            requests = {str(r["intent_id"]): str(r["id"]) for r in found}
        events: list[Event] = []
        for change in changes:
            row = rows.get(change.intent_id)
            if row is None:
                log.warning(
                    "state change of intent %s, which PM has no record of (ignored)", change.intent_id
                )
                continue
            merchant = payloads.merchant_of(row)
            if merchant is None:
                continue
            request_id = requests.get(change.intent_id)
            for event_type in payloads.event_types(change, row["type"], request_id is not None):
                try:
                    data = payloads.data(
                        row, request_id if event_type == "payment_request.confirmed" else None
                    )
                except msgspec.ValidationError as exc:
                    # A stored intent the API could not show either: retrying cannot help.
                    log.error("intent %s cannot be shown in a webhook (skipped): %s", change.intent_id, exc)
                    continue
                body = payloads.body(event_type, change.produced_at, data)
                if len(body) > payloads.MAX_BODY_BYTES:
                    log.warning("webhook body of %s %s is %d bytes", event_type, change.intent_id, len(body))
                events.append(Event(change.intent_id, merchant, event_type, body))
        return events

    async def insert(self, conn: Conn, events: list[Event]) -> int:
        """One delivery per event and subscribed endpoint; how many were new."""
        merchants = sorted({e.merchant_id for e in events})
        endpoints = await conn.fetch(queries.SELECT_ENABLED_ENDPOINTS, merchants)
        rows = [
            (
                payloads.webhook_id(event.intent_id, event.event_type),
                endpoint["endpoint_id"],
                event.merchant_id,
                event.event_type,
                event.intent_id,
                event.body,
            )
            for event in events
            for endpoint in endpoints
            if endpoint["merchant_id"] == event.merchant_id and event.event_type in endpoint["event_types"]
        ]
        if not rows:
            return 0
        made = await conn.fetch(
            queries.INSERT_DELIVERIES, *(list(column) for column in zip(*rows, strict=True))
        )
        for row in made:
            DELIVERIES_MADE.labels(row["event_type"]).inc()
        return len(made)
