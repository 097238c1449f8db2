"""What `pm streams` reports: per stream partition and consumer group, its length, lag, pending
entries, oldest pending age, consumers and DLQ size, and which expected groups do not exist yet."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from pm_shared.streams import names
from pm_shared.streams.stats import partition_stats


class StreamRow(msgspec.Struct, kw_only=True):
    """One consumer group of one stream partition, as printed (and as `--json` emits it)."""

    stream: str
    partition: int
    key: str
    group: str
    provisioned: bool
    """False when the partition or this group does not exist yet; the figures are then null."""
    length: int | None
    lag: int | None
    """Null when Redis cannot tell (an undelivered entry was deleted); never reported as 0."""
    pending: int | None
    oldest_pending_age_s: float | None
    consumers: int | None
    dlq_length: int | None


async def collect(redis: Redis, specs: Sequence[names.StreamSpec], partitions: int) -> list[StreamRow]:
    """A row per (stream partition, consumer group): the groups Redis knows, then missing expected ones."""
    rows: list[StreamRow] = []
    for spec in specs:
        for partition in range(partitions):
            rows += await _partition_rows(redis, spec, partition)
    return rows


async def _partition_rows(redis: Redis, spec: names.StreamSpec, partition: int) -> list[StreamRow]:
    key = names.stream_key(spec.name, partition)
    stats = await partition_stats(redis, key, spec.name, partition)
    rows = [
        StreamRow(
            stream=spec.name,
            partition=partition,
            key=key,
            group=s.group,
            provisioned=True,
            length=s.length,
            lag=s.lag,
            pending=s.pending,
            oldest_pending_age_s=s.oldest_pending_age_s,
            consumers=s.consumers,
            dlq_length=s.dlq_length,
        )
        for s in stats
    ]
    present = {s.group for s in stats}
    rows += [
        StreamRow(
            stream=spec.name,
            partition=partition,
            key=key,
            group=group,
            provisioned=False,
            length=stats[0].length if stats else None,
            lag=None,
            pending=None,
            oldest_pending_age_s=None,
            consumers=None,
            dlq_length=stats[0].dlq_length if stats else None,
        )
        for group in spec.groups
        if group not in present
    ]
    return rows
