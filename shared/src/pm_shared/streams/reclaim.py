"""The reclaimer: takes over entries left idle past the lease, and cleans up the group.

Every `claim_interval_ms`, per partition: entries idle past the lease after their last allowed
delivery are dead-lettered (their handler never finished; counts come from XPENDING, because
XAUTOCLAIM does not return them); the rest are claimed with XAUTOCLAIM, following its cursor, and
handled like any batch. Now and then, consumers that are idle and hold nothing are removed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import ResponseError

from pm_shared.streams import failures
from pm_shared.streams.batches import Batches
from pm_shared.streams.concurrency import sleep_unless
from pm_shared.streams.connection import TRANSIENT_ERRORS, as_str
from pm_shared.streams.delivery import RawEntry
from pm_shared.streams.membership import Membership
from pm_shared.streams.names import failures_key, parse_key
from pm_shared.streams.publisher import PAYLOAD_FIELD

log = logging.getLogger(__name__)

# How many XPENDING/XAUTOCLAIM pages one reclaim pass may walk before yielding to the next pass.
RECLAIM_PAGE_BUDGET = 50
# Consumers with nothing pending and idle this long are removed (never one with pending entries:
# XGROUP DELCONSUMER would drop its pending entries for good).
STALE_CONSUMER_MS = 10 * 60 * 1000
# Reclaim passes between two looks for stale consumers.
PASSES_PER_CLEANUP = 60


class Reclaimer:
    """Reclaims the idle entries of one consumer's partitions (see the module docstring)."""

    def __init__(self, seat: Membership, batches: Batches[Any]) -> None:
        self.seat = seat
        self.batches = batches

    async def run(self, key: str, stop: asyncio.Event) -> None:
        """Reclaim `key` every `claim_interval_ms` until `stop`; Redis outages only skip a pass."""
        passes = 0
        while not await sleep_unless(stop, self.seat.tuning.claim_interval_ms / 1000):
            try:
                await self.reclaim(key)
                passes += 1
                if passes % PASSES_PER_CLEANUP == 0:
                    await self._remove_stale_consumers(key)
            except TRANSIENT_ERRORS as exc:
                log.warning("reclaim on %s skipped: %s", key, exc)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("reclaim on %s skipped: the group does not exist (yet)", key)

    async def reclaim(self, key: str) -> int:
        """One reclaim pass over `key`: dead-letter exhausted idle entries, claim and handle the rest."""
        await self._dead_letter_exhausted(key)
        seat = self.seat
        handled = 0
        cursor: bytes | str = b"0-0"
        for _ in range(RECLAIM_PAGE_BUDGET):
            reply = await seat.redis.xautoclaim(
                key, seat.group, seat.consumer, seat.tuning.lease_ms, start_id=cursor, count=seat.tuning.count
            )
            cursor, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                await self._lost(key, deleted)
            if claimed:
                await self._handle_claimed(key, claimed)
                handled += len(claimed)
            if as_str(cursor) == "0-0":
                break
        return handled

    async def _lost(self, key: str, deleted: list[Any]) -> None:
        """The payload was trimmed away before anyone acked it: a lost message. Redis has already
        dropped these ids from the pending list; all we can do is shout."""
        self.seat.labels[key].claim_deleted.inc(len(deleted))
        ids = [as_str(i) for i in deleted]
        log.error(
            "LOST: %d pending entries of %s were trimmed or deleted before ack: %s", len(ids), key, ids[:20]
        )
        await self.seat.redis.hdel(failures_key(*parse_key(key)), *ids)

    async def _handle_claimed(self, key: str, claimed: list[RawEntry]) -> None:
        seat = self.seat
        seat.labels[key].claimed.inc(len(claimed))
        claimed_ids = {as_str(e[0]) for e in claimed}
        seat.reclaiming |= claimed_ids
        try:
            ids = await self.batches.process(key, claimed, await seat.attempts(key, [e[0] for e in claimed]))
            if ids:
                await seat.ack(key, ids)
        finally:
            seat.reclaiming -= claimed_ids

    async def _dead_letter_exhausted(self, key: str) -> None:
        """Entries idle past the lease after their last allowed delivery: the handler never finished."""
        seat = self.seat
        start = "-"
        for _ in range(RECLAIM_PAGE_BUDGET):
            rows = await seat.redis.xpending_range(
                key, seat.group, min=start, max="+", count=100, idle=seat.tuning.lease_ms
            )
            spent = [
                (as_str(r["message_id"]), int(r["times_delivered"]))
                for r in rows
                if int(r["times_delivered"]) >= seat.tuning.max_deliveries
            ]
            if spent:
                async with seat.redis.pipeline(transaction=False) as pipe:
                    for entry_id, _ in spent:
                        pipe.xrange(key, min=entry_id, max=entry_id)
                    found = await pipe.execute()
                entries = [
                    (entry_id, hits[0][1].get(PAYLOAD_FIELD) if hits else None, count + 1)
                    for (entry_id, count), hits in zip(spent, found, strict=True)
                ]
                letters = await failures.exhausted_letters(seat, key, entries)
                for letter in letters:
                    log.error(
                        "dead-lettering %s %s after %d deliveries: %s",
                        key,
                        letter.entry_id,
                        letter.attempts,
                        letter.error,
                    )
                await seat.dead_letter(key, letters)
            if len(rows) < 100:
                return
            start = "(" + as_str(rows[-1]["message_id"])

    async def _remove_stale_consumers(self, key: str) -> None:
        seat = self.seat
        for row in await seat.redis.xinfo_consumers(key, seat.group):
            name = as_str(row["name"])
            if name != seat.consumer and int(row["pending"]) == 0 and int(row["idle"]) > STALE_CONSUMER_MS:
                # A live consumer is never this idle: every blocking read (≤ 2 s) resets its idle time.
                dropped = await seat.redis.xgroup_delconsumer(key, seat.group, name)
                log.info("removed idle consumer %s from %s/%s (pending %s)", name, key, seat.group, dropped)
