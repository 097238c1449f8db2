"""One consumer's place in its consumer group: the group commands the consumer's parts share.

The read loop (`consumer`), the batch handling (`batches`), the settling of failures (`failures`)
and the reclaimer (`reclaim`) all act as the same consumer of the same group: they ack, read
delivery counts, renew leases and dead-letter through one `Membership`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from pm_shared.streams import dlq, metrics
from pm_shared.streams.connection import as_str
from pm_shared.streams.tuning import Tuning


@dataclass
class Membership:
    redis: Redis
    """For ordinary commands (it may retry them)."""
    group: str
    consumer: str
    tuning: Tuning
    labels: dict[str, metrics.Labels]
    """Metric children by partition key."""
    reclaiming: set[str] = field(default_factory=set)
    """Entries the reclaimer is handling. They sit in this consumer's pending list, so a re-read of
    that list (after a reconnect) must leave them to the reclaimer."""

    async def attempts(self, key: str, ids: Sequence[bytes]) -> dict[str, int]:
        """Delivery counts of this consumer's pending `ids`, from XPENDING."""
        if not ids:
            return {}
        rows = await self.redis.xpending_range(
            key, self.group, min=ids[0], max=ids[-1], count=len(ids) + 1000, consumername=self.consumer
        )
        return {as_str(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def owned(self, key: str, ids: list[str]) -> list[str]:
        """Those of `ids` (ascending) still pending with this consumer."""
        if not ids:
            return []
        rows = await self.redis.xpending_range(
            key, self.group, min=ids[0], max=ids[-1], count=len(ids) + 1000, consumername=self.consumer
        )
        mine = {as_str(r["message_id"]) for r in rows}
        return [i for i in ids if i in mine]

    async def ack(self, key: str, ids: list[str]) -> None:
        acked = await self.redis.xack(key, self.group, *ids)
        self.count_acks(key, len(ids), int(acked))

    def count_acks(self, key: str, sent: int, acked: int) -> None:
        labels = self.labels[key]
        labels.ack.inc(acked)
        if acked < sent:
            # Someone else acked or claimed them meanwhile (we were slower than the lease): harmless,
            # because handlers are idempotent, but worth seeing.
            labels.stale_ack.inc(sent - acked)

    async def claim(self, key: str, ids: Sequence[str], *, idle_ms: int | None = None) -> None:
        """XCLAIM `ids` for this consumer with JUSTID (the delivery count stays), resetting their idle
        time to `idle_ms` (None: to now)."""
        await self.redis.xclaim(key, self.group, self.consumer, 0, list[Any](ids), idle=idle_ms, justid=True)

    async def dead_letter(self, key: str, letters: Sequence[dlq.DeadLetter]) -> None:
        """Move `letters` to the DLQ and ack them, in one MULTI."""
        await dlq.move(self.redis, key, self.group, self.consumer, letters)
