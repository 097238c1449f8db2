"""Sweeps asked for now (`pm_shared.reconciliation.requests`): popped from the Redis list one at a
time and run as their own runs (`<window>@<request id>`), beside the schedule."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pm_reconciler.sweeps.runner import Runner, Sweep
from pm_reconciler.sweeps.window import Window
from pm_shared.reconciliation import requests

log = logging.getLogger(__name__)


async def serve(
    redis: Redis,
    runner: Runner,
    sweeps: Mapping[str, Sweep],
    stop: asyncio.Event,
    after: Mapping[str, Callable[[], Awaitable[object]]] | None = None,
) -> None:
    """Until `stop`: wait for a request (1 s at a time), run it (then `after[sweep]`: the rechecks of
    the sweep's unresolved alerts), log what it found."""
    while not stop.is_set():
        try:
            popped = await redis.blpop([requests.REQUESTS_KEY], timeout=1)
        except RedisError as exc:
            log.warning("reconciler requests: Redis unavailable (%s); trying again", exc)
            await asyncio.sleep(1)
            continue
        if popped is None:
            continue
        try:
            request = requests.decode(popped[1])
        except Exception:
            log.exception("reconciler request %r is not one: dropped", popped[1][:200])
            continue
        sweep = sweeps.get(request.sweep)
        if sweep is None:
            log.error("reconciler request %s names no sweep this build has: %s", request.id, request.sweep)
            continue
        try:
            stats = await runner.run(sweep, Window.of_day(request.day), request.period)
            if after and request.sweep in after:
                await after[request.sweep]()
            log.info("sweep %s asked by %s (%s): %s", request.sweep, request.requested_by, request.id, stats)
        except Exception:
            log.exception("sweep %s asked by %s (%s) failed", request.sweep, request.requested_by, request.id)
