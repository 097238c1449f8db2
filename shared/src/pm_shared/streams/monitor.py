"""Stream gauges for Prometheus (length, lag, pending, outstanding, oldest pending age, DLQ length).

Lag is exported as NaN when Redis reports it as NULL: a dashboard or autoscaler must never read an
unknown backlog as an empty one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pm_shared.streams import metrics
from pm_shared.streams.errors import StreamMissingError
from pm_shared.streams.names import parse_key
from pm_shared.streams.stats import partition_stats

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 10.0


async def update_gauges(redis: Redis, keys: Sequence[str]) -> None:
    """Read every partition in `keys` once and set the gauges."""
    for key in keys:
        name, partition = parse_key(key)
        try:
            rows = await partition_stats(redis, key, name, partition)
        except StreamMissingError:
            continue
        for row in rows:
            lag = math.nan if row.lag is None else float(row.lag)
            metrics.GROUP_LAG.labels(key, row.group).set(lag)
            metrics.GROUP_PENDING.labels(key, row.group).set(row.pending)
            metrics.GROUP_OUTSTANDING.labels(key, row.group).set(lag + row.pending)
            metrics.OLDEST_PENDING_AGE.labels(key, row.group).set(row.oldest_pending_age_s or 0.0)
            metrics.STREAM_LENGTH.labels(key).set(row.length)
            metrics.DLQ_LENGTH.labels(key).set(row.dlq_length)


async def poll(
    redis: Redis, keys: Sequence[str], stop: asyncio.Event, interval_s: float = POLL_INTERVAL_S
) -> None:
    """Refresh the gauges every `interval_s` until `stop` is set; Redis errors only skip a round."""
    while not stop.is_set():
        try:
            await update_gauges(redis, keys)
        except RedisError as exc:
            log.warning("stream gauges not refreshed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
