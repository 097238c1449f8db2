"""Writing messages to the outbox inside the caller's transaction, and publishing them after it commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from pm_shared.db import DATABASE_ERRORS, Conn, Pool
from pm_shared.errors import RetryLater
from pm_shared.messages import Message
from pm_shared.outbox import queries as q
from pm_shared.outbox.marks import Marks
from pm_shared.streams.publisher import Publisher, encode

log = logging.getLogger(__name__)

# What a publish can fail with that the relay repairs later (a RetryLater: back-pressure, a stream not
# provisioned yet; Redis refusing or away); anything else is a bug and propagates.
PUBLISH_ERRORS = (RetryLater, RedisError, OSError)


@dataclass(frozen=True)
class Outgoing:
    """One message to send once the transaction that wrote it commits."""

    stream: str
    """Logical stream name (`pm:ledger:commands`); the partition follows from the intent id."""
    message: Message


async def enqueue(conn: Conn, items: Sequence[Outgoing]) -> list[Outgoing]:
    """Write `items` to the outbox in the caller's open transaction (one statement).

    A message id already in the outbox is skipped, as is a repeat within `items`; returns the
    items that were newly enqueued, in their order: those are the ones to publish after commit.
    """
    if not items:
        return []
    added = {
        row["message_id"]
        for row in await conn.fetch(
            q.INSERT_MESSAGES,
            [item.stream for item in items],
            [item.message.intent_id for item in items],
            [item.message.message_id for item in items],
            [encode(item.message) for item in items],
        )
    }
    fresh: list[Outgoing] = []
    for item in items:
        if item.message.message_id in added:
            added.discard(item.message.message_id)
            fresh.append(item)
    return fresh


async def publish_committed(
    pool: Pool, publisher: Publisher, items: Sequence[Outgoing], marks: Marks | None = None
) -> int:
    """Publish committed outbox `items` (one publish_many per stream), then mark them in one UPDATE
    (or hand them to `marks`, which marks many publishes in one UPDATE later).

    Returns how many were published. A refused or failed publish is logged, not raised: those rows
    stay unpublished and the relay sends them later. Each stream is tried on its own, so a stream
    under back-pressure (say `pm:events` with a slow reader) does not hold up another (the ledger
    commands); within a stream, messages keep their order.
    """
    by_stream: dict[str, list[Message]] = {}
    for item in items:
        by_stream.setdefault(item.stream, []).append(item.message)

    async def publish(stream: str, messages: list[Message]) -> list[str]:
        try:
            await publisher.publish_many(stream, messages)
        except PUBLISH_ERRORS as exc:
            log.warning(
                "%d outbox messages for %s committed, not published (%r); left for the relay",
                len(messages),
                stream,
                exc,
            )
            return []
        return [message.message_id for message in messages]

    # The streams at once: one round trip's wait for all of them, not one after the other.
    sent = await asyncio.gather(*(publish(stream, messages) for stream, messages in by_stream.items()))
    published = [message_id for ids in sent for message_id in ids]
    if published and marks is not None:
        marks.extend(published)
    elif published:
        try:
            async with pool.acquire() as conn:
                await conn.execute(q.MARK_PUBLISHED_BY_MESSAGE_ID, published)
        except DATABASE_ERRORS as exc:
            # Published already: the relay sends these once more, and consumers deduplicate.
            log.warning("%d outbox messages published but not marked (%r)", len(published), exc)
    return len(published)
