"""The Redis lease that makes exactly one ledger-writer active; standbys wait (docs/architecture.md).

`SET key token NX PX lease_ms` takes it; the holder renews it every lease/3 with a compare-and-set
script and releases it with a compare-and-delete, so only the holder's token ever extends or ends
it. A holder that dies without releasing (SIGKILL) leaves the key to expire: a standby takes over
within the lease time.

The holder trusts its lease only until `sent + lease_ms`, where `sent` is when the acquiring or
renewing command left this process: Redis starts the key's clock later than that, so the holder
always believes it has lost the lease before Redis lets anyone else take it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """One process's claim on `key`; `held` is true only while the claim is certainly still valid."""

    def __init__(self, redis: Redis, key: str, lease_ms: int, token: str | None = None) -> None:
        self.redis = redis
        self.key = key
        self.lease_ms = lease_ms
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._valid_until = 0.0  # monotonic seconds
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    @property
    def remaining_s(self) -> float:
        return max(0.0, self._valid_until - time.monotonic())

    async def try_acquire(self) -> bool:
        sent = time.monotonic()
        if await self.redis.set(self.key, self.token, nx=True, px=self.lease_ms):
            self._valid_until = sent + self.lease_ms / 1000
            return True
        return False

    async def renew(self) -> bool:
        """Extend the lease if this process still holds it; False (and not held) when it does not."""
        sent = time.monotonic()
        if int(await self._renew(keys=[self.key], args=[self.token, self.lease_ms])):
            self._valid_until = sent + self.lease_ms / 1000
            return True
        self._valid_until = 0.0
        return False

    async def release(self) -> bool:
        """Give the lease up at once (a graceful stop), so a standby need not wait for it to expire."""
        self._valid_until = 0.0
        return bool(int(await self._release(keys=[self.key], args=[self.token])))

    async def holder(self) -> str | None:
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until the lease is ours (True) or `stop` is set (False)."""
        poll_s = min(self.lease_ms / 10_000, 1.0)
        announced = False
        while not stop.is_set():
            try:
                if await self.try_acquire():
                    log.info("lease %s acquired: this process is the active writer", self.key)
                    return True
                if not announced:
                    log.info(
                        "standby: lease %s is held by %s; waiting to take over",
                        self.key,
                        await self.holder(),
                    )
                    announced = True
            except RedisError as exc:
                log.warning("standby: cannot reach Redis to take lease %s: %s", self.key, exc)
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass
        return False

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew every lease/3 until cancelled; set `lost` as soon as the lease cannot be trusted."""
        interval = self.lease_ms / 3000
        retry = self.lease_ms / 10_000
        while True:
            await asyncio.sleep(interval)
            while True:
                try:
                    # A renewal that hangs is a lost lease, not a wait: given up `retry` before the
                    # lease could expire in Redis, so the writer stops before a standby can take over.
                    if await asyncio.wait_for(self.renew(), max(self.remaining_s - retry, 0.001)):
                        break
                    log.error("lease %s was taken over or expired: stopping as the writer", self.key)
                    lost.set()
                    return
                except (RedisError, TimeoutError) as exc:
                    # Retry while the lease is still certainly ours; give up before it can expire.
                    if self.remaining_s <= retry:
                        self._valid_until = 0.0
                        log.error("lease %s could not be renewed in time (%r): stopping", self.key, exc)
                        lost.set()
                        return
                    log.warning("lease %s renewal failed (%s); retrying", self.key, exc)
                    await asyncio.sleep(retry)
