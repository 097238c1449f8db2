"""The delivery log as an operator reads and replays it (docs/webhooks-api.md): pages of deliveries
by endpoint or merchant and status, one delivery with its attempts, and a replay. The sender
(`pm_webhooks`) writes the deliveries and attempts; this module only reads them, but for a replay.

A replay makes a delivery of any status due again: PENDING, `next_attempt_at` now, its attempts
counted as they are, `replay_by` the actor; the sender's next attempt is then a `replay` (its
`webhook-id` and body unchanged, so a receiver that dedupes sees the same event). It is refused for a
DISABLED endpoint (enable it first) and, for a moment, while a sender is attempting it (its claim
runs: the attempt's record would overwrite the replay); it is logged in `pm.webhook_event_log`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pm_shared.db import Conn
from pm_shared.webhooks import endpoints, queries

STATUSES = ("PENDING", "DELIVERED", "FAILED")


class DeliveryNotFoundError(LookupError):
    pass


class EndpointDisabledError(Exception):
    """A replay asked for a delivery whose endpoint is disabled."""

    def __init__(self, delivery_id: int, endpoint_id: str) -> None:
        super().__init__(f"endpoint {endpoint_id} of delivery {delivery_id} is disabled: enable it first")
        self.delivery_id = delivery_id
        self.endpoint_id = endpoint_id


class DeliveryInFlightError(Exception):
    """A sender is attempting the delivery now (it holds a claim on it): a replay waits until the
    attempt is recorded, which would otherwise overwrite the replay (or be lost, were the claim
    taken away)."""

    def __init__(self, delivery_id: int, retry_after_s: int) -> None:
        super().__init__(f"delivery {delivery_id} is being attempted now: ask again in {retry_after_s} s")
        self.delivery_id = delivery_id
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: str
    endpoint_id: str
    merchant_id: str
    event_type: str
    intent_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    replay_by: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class Attempt:
    attempt: int
    trigger: str
    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None
    actor: str | None


@dataclass(frozen=True)
class Detail:
    delivery: Delivery
    payload: bytes
    """The exact body the sender signs and sends."""
    attempts: list[Attempt]


def delivery_of(row: asyncpg.Record) -> Delivery:
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        endpoint_id=row["endpoint_id"],
        merchant_id=row["merchant_id"],
        event_type=row["event_type"],
        intent_id=None if row["intent_id"] is None else str(row["intent_id"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        replay_by=row["replay_by"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
        updated_at=row["updated_at"],
    )


async def page(
    conn: Conn,
    *,
    merchant_id: str | None = None,
    endpoint_id: str | None = None,
    status: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    """Newest first, at most `limit`; `before`: only deliveries with a smaller id (the next page)."""
    below = before if before is not None else 2**63 - 1
    if endpoint_id is not None:
        query: str = queries.SELECT_ENDPOINT_DELIVERIES
        args: Sequence[object] = (status, below, limit, endpoint_id, merchant_id)
    elif merchant_id is not None:
        query, args = queries.SELECT_MERCHANT_DELIVERIES, (status, below, limit, merchant_id)
    else:
        query, args = queries.SELECT_DELIVERIES, (status, below, limit)
    return [delivery_of(r) for r in await conn.fetch(query, *args)]


async def get(conn: Conn, delivery_id: int) -> Detail:
    row = await conn.fetchrow(queries.SELECT_DELIVERY, delivery_id)
    if row is None:
        raise DeliveryNotFoundError(delivery_id)
    attempts = [
        Attempt(
            attempt=r["attempt"],
            trigger=r["trigger"],
            at=r["at"],
            status_code=r["status_code"],
            error=r["error"],
            latency_ms=r["latency_ms"],
            response_excerpt=r["response_excerpt"],
            actor=r["actor"],
        )
        for r in await conn.fetch(queries.SELECT_ATTEMPTS, delivery_id)
    ]
    return Detail(delivery_of(row), bytes(row["payload"]), attempts)


async def replay(conn: Conn, delivery_id: int, actor: str) -> Delivery:
    """Make the delivery due now, its next attempt a replay by `actor`; logged.

    Raises DeliveryNotFoundError; EndpointDisabledError when its endpoint is disabled, and
    DeliveryInFlightError while a sender is attempting it (nothing changed either way). Asking again
    before the sender attempts it is harmless: one attempt, the latest actor.
    """
    async with conn.transaction():
        locked = await conn.fetchrow(queries.LOCK_DELIVERY, delivery_id)
        if locked is None:
            raise DeliveryNotFoundError(delivery_id)
        if locked["endpoint_status"] != endpoints.ENABLED:
            raise EndpointDisabledError(delivery_id, locked["endpoint_id"])
        if locked["in_flight_s"] is not None:
            raise DeliveryInFlightError(delivery_id, max(1, locked["in_flight_s"]))
        row = await conn.fetchrow(queries.REPLAY_DELIVERY, delivery_id, actor)
        assert row is not None  # locked above
        replayed = delivery_of(row)
        await endpoints.log(conn, replayed.endpoint_id, "replayed", actor, delivery_id=delivery_id)
    return replayed
