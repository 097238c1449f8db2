"""Idempotent provisioning: every stream partition and consumer group exists before anything is produced."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared.streams.names import ALL_STREAMS, StreamSpec, stream_key

log = logging.getLogger(__name__)

MIN_REDIS_VERSION = (7, 0)


class RedisVersionError(Exception):
    """The server lacks stream features the runtime relies on (XAUTOCLAIM's deleted ids, group lag)."""


async def check_version(redis: Redis) -> tuple[int, ...]:
    info = await redis.info("server")
    version = tuple(int(part) for part in str(info["redis_version"]).split(".")[:3])
    if version[:2] < MIN_REDIS_VERSION:
        raise RedisVersionError(
            f"Redis {'.'.join(map(str, version))} is too old: PM needs Redis ≥ 7.0 "
            "(XAUTOCLAIM reports trimmed entries and XINFO GROUPS reports lag only from 7.0)"
        )
    return version


async def ensure_group(redis: Redis, key: str, group: str) -> bool:
    """Create `group` on `key` at id 0 (creating the stream); False when it existed.

    Id 0 rather than `$`: nothing written before the group existed is skipped, and the group's
    lag stays valid (an arbitrary start id makes XINFO GROUPS report lag as NULL).
    """
    try:
        await redis.xgroup_create(key, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


async def provision(redis: Redis, partitions: int, specs: Iterable[StreamSpec] = ALL_STREAMS) -> int:
    """Create every partition of every stream with its groups; returns how many groups were new."""
    await check_version(redis)
    created = 0
    for spec in specs:
        for partition in range(partitions):
            for group in spec.groups:
                if await ensure_group(redis, stream_key(spec.name, partition), group):
                    created += 1
                    log.info("created group %s on %s", group, stream_key(spec.name, partition))
    return created
