"""The consumer every service runs: read a batch, handle it, ack it with one XACK; reclaim, retry, DLQ.

Delivery is at least once. What makes that safe and bounded:
- on start and after every reconnect the consumer first re-reads its own pending entries (a
  retried or interrupted XREADGROUP may have delivered entries whose reply never arrived);
- a reclaimer (`reclaim`) takes over entries idle past the lease, and dead-letters those past
  their last delivery;
- a batch (`batches`) is decoded, handed over and settled: a handler that runs long renews its
  lease, an outage is waited out in place, a failure is retried or dead-lettered as
  `pm_shared.errors` says (`failures`).

With `batches_in_flight` > 1 the next batch is read and handed over while the previous ones are
still being handled, so a handler that waits on another server (the ledger writer waits on
PostgreSQL, then on Redis; a PSP adapter on the PSP) overlaps that wait with the next batch's work,
and one slow message no longer holds up the messages read after it. Per-message handlers of every
batch share the one `concurrency` limit. Each batch is acked when it is done; all in-flight batches
are finished before a re-read of the pending list and before stopping.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Unpack

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared.streams import metrics
from pm_shared.streams.batches import Batches
from pm_shared.streams.concurrency import sleep_unless
from pm_shared.streams.connection import TRANSIENT_ERRORS
from pm_shared.streams.delivery import BatchHandler, Delivery, MessageHandler, raw_entries
from pm_shared.streams.membership import Membership
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group
from pm_shared.streams.reclaim import Reclaimer
from pm_shared.streams.tuning import Tuning, TuningOptions

__all__ = ["BatchHandler", "Consumer", "Delivery", "MessageHandler"]

log = logging.getLogger(__name__)

M = TypeVar("M")

# A lost connection, a timeout, and on a cluster a failover in progress (`connection.TRANSIENT_ERRORS`).
REDIS_ERRORS = TRANSIENT_ERRORS
# Pauses before reading again after Redis failed, doubling.
READ_BACKOFF_S = 0.05
READ_BACKOFF_MAX_S = 5.0

# XACK of many ids in one script call, the ids in one argument (space-separated): redis-py packs every
# argument of a command in Python, about 1.6 µs per id, against a few ns for one joined argument.
# Worth it only for large acks: in a pipeline the script costs a SCRIPT EXISTS round trip first.
_ACK_MANY = """
local ids, n = {}, 0
for id in string.gmatch(ARGV[2], '%S+') do
  n = n + 1
  ids[n] = id
end
local acked = 0
for i = 1, n, 4096 do
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids, i, math.min(i + 4095, n)))
end
return acked
"""
ACK_SCRIPT_MIN = 256
"""Acks of at least this many ids go through `_ACK_MANY`, smaller ones as a plain XACK."""


@dataclass
class _Partition:
    """The read loop's state for one partition key."""

    key: str
    recovering: bool = True
    """Re-reading this consumer's own pending entries (from `cursor`) before reading new ones."""
    cursor: bytes = b"0"
    to_ack: list[str] = field(default_factory=list)
    """Ids handled but not yet acked: their XACK travels with the next read (one round trip)."""
    in_flight: set[asyncio.Task[list[str]]] = field(default_factory=set)
    """Batches being handled while the next is read (with batches_in_flight > 1)."""

    def recover(self) -> None:
        self.recovering, self.cursor = True, b"0"


class Consumer(Generic[M]):
    """Reads one logical stream (all its partitions) as one member of a consumer group."""

    def __init__(
        self,
        *,
        redis: Redis,
        reader: Redis,
        stream: str,
        group: str,
        consumer: str,
        decoder: msgspec.json.Decoder[M],
        handle_batch: BatchHandler[M] | None = None,
        handle: MessageHandler[M] | None = None,
        **tuning: Unpack[TuningOptions],
    ) -> None:
        """
        Args:
            redis: client for ordinary commands (it may retry them).
            reader: client for blocking reads (it must not retry: see `connection.connect`).
            stream: logical stream name, e.g. `pm:intents`.
            handle_batch / handle: exactly one of them.
            tuning: `Tuning`'s fields (`block_ms=50`); the others keep their defaults.
        """
        if (handle_batch is None) == (handle is None):
            raise ValueError("give exactly one of handle_batch and handle")
        self.tuning = Tuning(**tuning)
        self.reader = reader
        self.stream = stream
        self.keys = [stream_key(stream, p) for p in range(self.tuning.partitions)]
        self.seat = Membership(
            redis, group, consumer, self.tuning, {key: metrics.Labels(key, group) for key in self.keys}
        )
        self.batches = Batches(self.seat, decoder, handle_batch, handle)
        self.reclaimer = Reclaimer(self.seat, self.batches)
        self.ready = asyncio.Event()
        """Set once every partition has drained its own pending entries and reads new ones."""
        self._recovered: set[str] = set()
        self._ack_many = reader.register_script(_ACK_MANY)

    @property
    def transient_retry_s(self) -> float:
        return self.tuning.transient_retry_s

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished and acked before returning."""
        self.batches.stop = stop
        async with asyncio.TaskGroup() as tasks:
            for key in self.keys:
                tasks.create_task(self._read_loop(key, stop), name=f"read {key}")
                tasks.create_task(self.reclaimer.run(key, stop), name=f"reclaim {key}")

    async def reclaim(self, key: str) -> int:
        """One reclaim pass over `key` (see `Reclaimer.reclaim`)."""
        return await self.reclaimer.reclaim(key)

    # -- reading -------------------------------------------------------------------------------

    async def _read_loop(self, key: str, stop: asyncio.Event) -> None:
        part = _Partition(key)
        backoff = READ_BACKOFF_S
        while not stop.is_set():
            try:
                await self._step(part)
                backoff = READ_BACKOFF_S
            except REDIS_ERRORS as exc:
                log.warning(
                    "redis unavailable while reading %s (%s); will re-read own pending entries", key, exc
                )
                part.recover()
                await sleep_unless(stop, backoff)
                backoff = min(backoff * 2, READ_BACKOFF_MAX_S)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group vanished (a Redis restart without persistence): recreate it.
                log.error("group %s missing on %s; re-provisioning", self.seat.group, key)
                await self._finish(part)
                await ensure_group(self.seat.redis, key, self.seat.group)
                part.recover()
                part.to_ack = []
        await self._ack_at_stop(part)

    async def _step(self, part: _Partition) -> None:
        if part.recovering:
            await self._recover_step(part)
        elif self.tuning.batches_in_flight == 1:
            await self._read_step(part)
        else:
            await self._overlapped_step(part)

    async def _recover_step(self, part: _Partition) -> None:
        """Handle the next batch of this consumer's own pending entries; done when none is left."""
        key = part.key
        # The pending list is about to be re-read: nothing of it may still be in hand.
        part.to_ack += await self._finish(part)
        if part.to_ack:
            await self.seat.ack(key, part.to_ack)
            part.to_ack = []
        reply = await self.reader.xreadgroup(
            self.seat.group, self.seat.consumer, {key: part.cursor}, count=self.tuning.count
        )
        raw = raw_entries(reply)
        if not raw:
            part.recovering = False
            self._mark_recovered(key)
            return
        part.cursor = raw[-1][0]
        raw = [e for e in raw if e[0].decode() not in self.seat.reclaiming]
        if raw:
            attempts = await self.seat.attempts(key, [e[0] for e in raw])
            part.to_ack = await self.batches.process(key, raw, attempts)

    async def _read_step(self, part: _Partition) -> None:
        """Ack what was handled, read new entries and handle them."""
        reply = await self._ack_and_read(part.key, part.to_ack)
        part.to_ack = []
        raw = raw_entries(reply)
        if raw:
            part.to_ack = await self.batches.process(part.key, raw, None)

    async def _overlapped_step(self, part: _Partition) -> None:
        """Read the next batch while earlier ones are handled; wait once `batches_in_flight` are."""
        _collect(part.in_flight, part.to_ack)
        # Block on Redis only with nothing in hand; otherwise a finished batch would wait up to
        # block_ms for its ack.
        reply = await self._ack_and_read(part.key, part.to_ack, block=not part.in_flight)
        part.to_ack = []
        raw = raw_entries(reply)
        if raw:
            part.in_flight.add(asyncio.create_task(self.batches.process(part.key, raw, None)))
        if part.in_flight and (len(part.in_flight) >= self.tuning.batches_in_flight or not raw):
            await asyncio.wait(part.in_flight, return_when=asyncio.FIRST_COMPLETED)
            _collect(part.in_flight, part.to_ack)

    async def _ack_at_stop(self, part: _Partition) -> None:
        part.to_ack += await self._finish(part)
        if not part.to_ack:
            return
        try:
            await self.seat.ack(part.key, part.to_ack)
        except REDIS_ERRORS as exc:
            log.warning(
                "%d handled entries of %s could not be acked at stop (%s); they will be "
                "delivered again and recognised by their idempotency keys",
                len(part.to_ack),
                part.key,
                exc,
            )

    async def _finish(self, part: _Partition) -> list[str]:
        """Wait for every batch in flight; the ids to ack of those that completed."""
        if not part.in_flight:
            return []
        await asyncio.wait(part.in_flight)
        done: list[str] = []
        for task in part.in_flight:
            if task.exception() is None:
                done += task.result()
            else:
                # Its entries stay pending: the re-read of the pending list or the reclaimer retries them.
                log.warning("a batch on %s was not settled: %r", part.key, task.exception())
        part.in_flight.clear()
        return done

    async def _ack_and_read(self, key: str, to_ack: list[str], *, block: bool = True) -> Any:
        seat = self.seat
        block_ms = self.tuning.block_ms if block else None
        if not to_ack:
            return await self.reader.xreadgroup(
                seat.group, seat.consumer, {key: ">"}, count=self.tuning.count, block=block_ms
            )
        async with self.reader.pipeline(transaction=False) as pipe:
            if len(to_ack) >= ACK_SCRIPT_MIN:
                await self._ack_many(keys=[key], args=[seat.group, " ".join(to_ack)], client=pipe)
            else:
                pipe.xack(key, seat.group, *to_ack)
            pipe.xreadgroup(seat.group, seat.consumer, {key: ">"}, count=self.tuning.count, block=block_ms)
            acked, reply = await pipe.execute()
        seat.count_acks(key, len(to_ack), int(acked))
        return reply

    def _mark_recovered(self, key: str) -> None:
        self._recovered.add(key)
        if len(self._recovered) == len(self.keys):
            self.ready.set()


def _collect(in_flight: set[asyncio.Task[list[str]]], to_ack: list[str]) -> None:
    """Move the finished batches out of `in_flight`, their ids into `to_ack`; then re-raise the first
    error of a batch that raised (the read loop treats it as if it had been handling it itself)."""
    done = [task for task in in_flight if task.done()]
    in_flight.difference_update(done)
    errors = [exc for task in done if (exc := task.exception()) is not None]
    for task in done:
        if task.exception() is None:
            to_ack += task.result()
    if errors:
        raise errors[0]
