"""What Redis says about a stream partition and its groups: length, lag, pending, oldest pending age."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared.streams.connection import as_str as _text
from pm_shared.streams.errors import StreamMissingError
from pm_shared.streams.names import dlq_key


def id_ms(entry_id: str | bytes) -> int:
    """The millisecond time part of a stream entry id (when it was added)."""
    return int(_text(entry_id).split("-", 1)[0])


@dataclass(frozen=True)
class GroupInfo:
    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    lag: int | None
    """None when Redis cannot tell (after a deletion of an undelivered entry); never read as 0."""


async def groups(redis: Redis, key: str) -> list[GroupInfo]:
    """One `XINFO GROUPS` for `key`."""
    try:
        raw = await redis.xinfo_groups(key)
    except ResponseError as exc:
        if "no such key" in str(exc):
            raise StreamMissingError(key) from exc
        raise
    return [
        GroupInfo(
            name=_text(g["name"]),
            consumers=int(g["consumers"]),
            pending=int(g["pending"]),
            last_delivered_id=_text(g["last-delivered-id"]),
            lag=None if g.get("lag") is None else int(g["lag"]),
        )
        for g in raw
    ]


async def count_after(redis: Redis, key: str, after_id: str, limit: int) -> int:
    """Entries after `after_id`, counted up to `limit`: the exact lag when XINFO reports NULL."""
    entries = await redis.xrange(key, min=f"({after_id}", max="+", count=limit)
    return len(entries or [])


async def outstanding(redis: Redis, key: str, limit: int) -> int:
    """The largest lag + pending over the groups of `key`; an unknown lag is counted, never 0.

    Counting stops near `limit`, the back-pressure threshold: past it the exact figure does not
    change the decision.
    """
    worst = 0
    for group in await groups(redis, key):
        lag = group.lag
        if lag is None:
            lag = await count_after(redis, key, group.last_delivered_id, limit + 1)
        worst = max(worst, lag + group.pending)
    return worst


@dataclass(frozen=True)
class PartitionStats:
    key: str
    length: int
    dlq_length: int
    group: str
    lag: int | None
    pending: int
    consumers: int
    oldest_pending_age_s: float | None


async def partition_stats(redis: Redis, key: str, name: str, partition: int) -> list[PartitionStats]:
    """A row per consumer group of one partition, as `pm streams` and the metrics poller show it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(key)
        pipe.xlen(key)
        pipe.xlen(dlq_key(name, partition))
        exists, length, dlq_length = await pipe.execute()
    if not exists:
        return []
    rows = []
    now_ms = time.time() * 1000
    for group in await groups(redis, key):
        oldest: float | None = None
        if group.pending:
            summary = await redis.xpending(key, group.name)
            if summary["min"] is not None:
                oldest = max(0.0, (now_ms - id_ms(summary["min"])) / 1000)
        rows.append(
            PartitionStats(
                key=key,
                length=int(length),
                dlq_length=int(dlq_length),
                group=group.name,
                lag=group.lag,
                pending=group.pending,
                consumers=group.consumers,
                oldest_pending_age_s=oldest,
            )
        )
    return rows
