"""The consumer every service runs: read a batch, handle it, ack it with one XACK; reclaim, retry, DLQ.

Delivery is at least once. What makes that safe and bounded:
- on start and after every reconnect the consumer first re-reads its own pending entries (a
  retried or interrupted XREADGROUP may have delivered entries whose reply never arrived);
- a background reclaimer takes over entries idle past the lease with XAUTOCLAIM, following its
  cursor; entries already delivered `max_deliveries` times go to the DLQ instead (counts from
  XPENDING, because XAUTOCLAIM does not return them);
- a handler that runs long renews its lease (`XCLAIM … JUSTID` resets idle time, not the count);
- a failed entry stays pending and becomes claimable again after `retry_delay_ms`; after its
  last delivery it is moved to the DLQ, acked in the same MULTI;
- a handler that fails because PostgreSQL or Redis went away (a restart, a failover) is called
  again in place, with backoff, for up to `transient_retry_s`, without counting a delivery: an
  outage of a few seconds must not push every message in hand towards the DLQ;
- an entry that does not decode is dead-lettered at once: retrying cannot fix it.

With `batches_in_flight` > 1 the next batch is read and handed over while the previous ones are
still being handled, so a handler that waits on another server (the ledger writer waits on
PostgreSQL, then on Redis; a PSP adapter on the PSP) overlaps that wait with the next batch's work,
and one slow message no longer holds up the messages read after it. Per-message handlers of every
batch share the one `concurrency` limit. Each batch is acked when it is done; all in-flight batches
are finished before a re-read of the pending list and before stopping.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_shared import logs
from pm_shared.errors import OUTAGES, PermanentError
from pm_shared.settings import CommonSettings
from pm_shared.streams import dlq, metrics
from pm_shared.streams.concurrency import Limiter, sleep_unless, start_eagerly, take_turns
from pm_shared.streams.connection import as_str as _text
from pm_shared.streams.names import failures_key, parse_key, stream_key
from pm_shared.streams.provision import ensure_group
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_shared.streams.stats import id_ms

log = logging.getLogger(__name__)

M = TypeVar("M")

# How many XPENDING/XAUTOCLAIM pages one reclaim pass may walk before yielding to the next pass.
RECLAIM_PAGE_BUDGET = 50
# Pauses between the in-place calls of a handler that met an outage (errors.OUTAGES), doubling.
TRANSIENT_PAUSE_S = 0.2
TRANSIENT_PAUSE_MAX_S = 5.0
# Consumers with nothing pending and idle this long are removed (never one with pending entries:
# XGROUP DELCONSUMER would drop its pending entries for good).
STALE_CONSUMER_MS = 10 * 60 * 1000


class Delivery(msgspec.Struct, Generic[M], frozen=True, gc=False):
    """One decoded stream entry handed to a handler."""

    entry_id: str
    key: str
    message: M
    attempt: int
    """1 on first delivery; the consumer never hands over an entry past `max_deliveries`."""


BatchHandler = Callable[[Sequence[Delivery[M]]], Awaitable[Mapping[str, BaseException] | None]]
"""Handles a whole batch; returns the failures by entry id (None or empty: all succeeded)."""
MessageHandler = Callable[[Delivery[M]], Awaitable[None]]
"""Handles one entry; raising marks it failed."""

RawEntry = tuple[bytes, dict[bytes, bytes]]


def _entries(reply: Any) -> list[RawEntry]:
    """Normalise an XREADGROUP reply (RESP2 list or RESP3 map) to one list of entries."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entry for batches in reply.values() for batch in batches for entry in batch]
    return [entry for _, batch in reply for entry in batch]


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


class _Labels:
    """Metric children for one stream key, resolved once rather than per message."""

    def __init__(self, key: str, group: str) -> None:
        self.ack = metrics.MESSAGES.labels(key, group, "ack")
        self.retry = metrics.MESSAGES.labels(key, group, "retry")
        self.transient = metrics.MESSAGES.labels(key, group, "transient")
        self.deleted = metrics.MESSAGES.labels(key, group, "deleted")
        self.stale_ack = metrics.MESSAGES.labels(key, group, "stale_ack")
        self.handler = metrics.HANDLER_SECONDS.labels(key, group)
        self.e2e = metrics.E2E_SECONDS.labels(key, group)
        self.batch = metrics.BATCH_SIZE.labels(key, group)
        self.inflight = metrics.INFLIGHT.labels(key, group)
        self.claimed = metrics.CLAIMED.labels(key, group)
        self.claim_deleted = metrics.CLAIM_DELETED.labels(key, group)


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
        partitions: int = 1,
        count: int = 100,
        block_ms: int = 2_000,
        concurrency: int = 100,
        lease_ms: int = 30_000,
        retry_delay_ms: int = 1_000,
        max_deliveries: int = 3,
        claim_interval_ms: int = 5_000,
        batches_in_flight: int = 1,
        transient_retry_s: float = 300.0,
    ) -> None:
        """
        Args:
            redis: client for ordinary commands (it may retry them).
            reader: client for blocking reads (it must not retry: see `connection.connect`).
            stream: logical stream name, e.g. `pm:intents`.
            handle_batch / handle: exactly one of them.
            concurrency: how many `handle` calls run at once.
            batches_in_flight: how many batches may be in hand at once (per partition); a batch
                handler must then be safe to call concurrently.
            transient_retry_s: how long entries whose handler met an outage (`errors.OUTAGES`)
                are handled again in place before the failure counts as a delivery; 0: at once.
        """
        if (handle_batch is None) == (handle is None):
            raise ValueError("give exactly one of handle_batch and handle")
        if batches_in_flight < 1:
            raise ValueError("batches_in_flight is at least 1")
        if not 1 <= block_ms <= 2_000:
            raise ValueError("block_ms must be between 1 and 2000")
        self.redis = redis
        self.reader = reader
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.decoder = decoder
        self.handle_batch = handle_batch
        self.handle = handle
        self.partitions = partitions
        self.count = count
        self.block_ms = block_ms
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.retry_delay_ms = retry_delay_ms
        self.max_deliveries = max_deliveries
        self.claim_interval_ms = claim_interval_ms
        self.batches_in_flight = batches_in_flight
        self.transient_retry_s = transient_retry_s
        self._stop: asyncio.Event | None = None
        self.keys = [stream_key(stream, p) for p in range(partitions)]
        self._labels = {key: _Labels(key, group) for key in self.keys}
        self._limiter = Limiter(concurrency)
        self.ready = asyncio.Event()
        """Set once every partition has drained its own pending entries and reads new ones."""
        self._recovered: set[str] = set()
        # Entries the reclaimer is handling: they sit in this consumer's pending list, so a re-read of
        # that list (after a reconnect) must leave them to the reclaimer.
        self._reclaiming: set[str] = set()

    @classmethod
    def from_settings(
        cls,
        settings: CommonSettings,
        *,
        redis: Redis,
        reader: Redis,
        stream: str,
        group: str,
        consumer: str,
        decoder: msgspec.json.Decoder[M],
        handle_batch: BatchHandler[M] | None = None,
        handle: MessageHandler[M] | None = None,
        transient_retry_s: float | None = None,
    ) -> Consumer[M]:
        """A consumer configured from `settings`; `transient_retry_s` overrides the setting."""
        return cls(
            redis=redis,
            reader=reader,
            stream=stream,
            group=group,
            consumer=consumer,
            decoder=decoder,
            handle_batch=handle_batch,
            handle=handle,
            partitions=settings.stream_partitions,
            count=settings.stream_batch_size,
            block_ms=settings.stream_block_ms,
            concurrency=settings.stream_concurrency,
            lease_ms=settings.stream_lease_ms,
            retry_delay_ms=settings.stream_retry_delay_ms,
            max_deliveries=settings.stream_max_deliveries,
            claim_interval_ms=settings.stream_claim_interval_ms,
            batches_in_flight=settings.stream_batches_in_flight,
            transient_retry_s=(
                settings.stream_transient_retry_s if transient_retry_s is None else transient_retry_s
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished and acked before returning."""
        self._stop = stop
        async with asyncio.TaskGroup() as tasks:
            for key in self.keys:
                tasks.create_task(self._read_loop(key, stop))
                tasks.create_task(self._reclaim_loop(key, stop))

    # -- reading -------------------------------------------------------------------------------

    async def _read_loop(self, key: str, stop: asyncio.Event) -> None:
        recovering, cursor, backoff = True, b"0", 0.05
        # Ids handled but not yet acked: their XACK travels with the next read (one round trip).
        to_ack: list[str] = []
        # Batches being handled while the next is read (with batches_in_flight > 1).
        in_flight: set[asyncio.Task[list[str]]] = set()
        while not stop.is_set():
            try:
                if recovering:
                    # The pending list is about to be re-read: nothing of it may still be in hand.
                    to_ack += await self._finish(key, in_flight)
                    if to_ack:
                        await self._ack_ids(key, to_ack)
                        to_ack = []
                    reply = await self.reader.xreadgroup(
                        self.group, self.consumer, {key: cursor}, count=self.count
                    )
                    raw = _entries(reply)
                    if not raw:
                        recovering = False
                        self._mark_recovered(key)
                        continue
                    cursor = raw[-1][0]
                    raw = [e for e in raw if e[0].decode() not in self._reclaiming]
                    if raw:
                        attempts = await self._attempts(key, [e[0] for e in raw])
                        to_ack = await self._process(key, raw, attempts)
                elif self.batches_in_flight == 1:
                    reply = await self._ack_and_read(key, to_ack)
                    to_ack = []
                    raw = _entries(reply)
                    if raw:
                        to_ack = await self._process(key, raw, None)
                else:
                    _collect(in_flight, to_ack)
                    # Block on Redis only with nothing in hand; otherwise a finished batch would wait
                    # up to block_ms for its ack.
                    reply = await self._ack_and_read(key, to_ack, block=not in_flight)
                    to_ack = []
                    raw = _entries(reply)
                    if raw:
                        in_flight.add(asyncio.create_task(self._process(key, raw, None)))
                    if in_flight and (len(in_flight) >= self.batches_in_flight or not raw):
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        _collect(in_flight, to_ack)
                backoff = 0.05
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning(
                    "redis unavailable while reading %s (%s); will re-read own pending entries", key, exc
                )
                recovering, cursor = True, b"0"
                await sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 5.0)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group vanished (a Redis restart without persistence): recreate it.
                log.error("group %s missing on %s; re-provisioning", self.group, key)
                await self._finish(key, in_flight)
                await ensure_group(self.redis, key, self.group)
                recovering, cursor, to_ack = True, b"0", []
        to_ack += await self._finish(key, in_flight)
        if to_ack:
            try:
                await self._ack_ids(key, to_ack)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning(
                    "%d handled entries of %s could not be acked at stop (%s); they will be "
                    "delivered again and recognised by their idempotency keys",
                    len(to_ack),
                    key,
                    exc,
                )

    async def _finish(self, key: str, in_flight: set[asyncio.Task[list[str]]]) -> list[str]:
        """Wait for every batch in flight; the ids to ack of those that completed."""
        if not in_flight:
            return []
        await asyncio.wait(in_flight)
        done: list[str] = []
        for task in in_flight:
            if task.exception() is None:
                done += task.result()
            else:
                # Its entries stay pending: the re-read of the pending list or the reclaimer retries them.
                log.warning("a batch on %s was not settled: %r", key, task.exception())
        in_flight.clear()
        return done

    async def _ack_and_read(self, key: str, to_ack: list[str], *, block: bool = True) -> Any:
        block_ms = self.block_ms if block else None
        if not to_ack:
            return await self.reader.xreadgroup(
                self.group, self.consumer, {key: ">"}, count=self.count, block=block_ms
            )
        async with self.reader.pipeline(transaction=False) as pipe:
            pipe.xack(key, self.group, *to_ack)
            pipe.xreadgroup(self.group, self.consumer, {key: ">"}, count=self.count, block=block_ms)
            acked, reply = await pipe.execute()
        self._count_acks(key, len(to_ack), int(acked))
        return reply

    def _mark_recovered(self, key: str) -> None:
        self._recovered.add(key)
        if len(self._recovered) == len(self.keys):
            self.ready.set()

    async def _attempts(self, key: str, ids: Sequence[bytes]) -> dict[str, int]:
        """Delivery counts of this consumer's pending `ids`, from XPENDING."""
        if not ids:
            return {}
        rows = await self.redis.xpending_range(
            key, self.group, min=ids[0], max=ids[-1], count=len(ids) + 1000, consumername=self.consumer
        )
        return {_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    # -- handling ------------------------------------------------------------------------------

    async def _process(self, key: str, raw: Sequence[RawEntry], attempts: dict[str, int] | None) -> list[str]:
        """Handle a batch; returns the ids to ack (dead letters and failures are settled here)."""
        labels = self._labels[key]
        labels.batch.observe(len(raw))
        deliveries: list[Delivery[M]] = []
        payloads: dict[str, bytes] = {}
        dead: list[dlq.DeadLetter] = []
        exhausted: list[tuple[str, bytes | None, int]] = []
        decode = self.decoder.decode
        for index, (entry_id_b, fields) in enumerate(raw):
            await take_turns(index)
            entry_id = entry_id_b.decode()
            attempt = attempts.get(entry_id, 1) if attempts is not None else 1
            payload = fields.get(PAYLOAD_FIELD)
            if not fields:
                labels.deleted.inc()
                dead.append(
                    dlq.DeadLetter(
                        entry_id,
                        None,
                        dlq.REASON_PAYLOAD_DELETED,
                        "the entry was trimmed or deleted before it was acked",
                        attempt,
                    )
                )
                continue
            if payload is None:
                dead.append(
                    dlq.DeadLetter(
                        entry_id,
                        None,
                        dlq.REASON_DECODE_ERROR,
                        "the entry has no 'm' field",
                        attempt,
                        extra=_fields_text(fields),
                    )
                )
                continue
            if attempt > self.max_deliveries:
                exhausted.append((entry_id, payload, attempt))
                continue
            try:
                message = decode(payload)
            except msgspec.DecodeError as exc:
                dead.append(dlq.DeadLetter(entry_id, payload, dlq.REASON_DECODE_ERROR, str(exc), attempt))
                continue
            deliveries.append(Delivery(entry_id=entry_id, key=key, message=message, attempt=attempt))
            payloads[entry_id] = payload
        if exhausted:
            dead.extend(await self._exhausted_letters(key, exhausted))
        if dead:
            for letter in dead:
                log.error(
                    "dead-lettering %s %s: %s (%s)",
                    key,
                    letter.entry_id,
                    letter.reason,
                    letter.error,
                    extra={"entry_id": letter.entry_id},
                )
            await dlq.move(self.redis, key, self.group, self.consumer, dead)
        if not deliveries:
            return []
        failures = await self._run_handler(key, deliveries)
        if not failures:
            ok = deliveries
        else:
            ok = [d for d in deliveries if d.entry_id not in failures]
            await self._on_failures(
                key, [d for d in deliveries if d.entry_id in failures], failures, payloads
            )
        if ok:
            labels.e2e.observe(max(0.0, time.time() - id_ms(ok[0].entry_id) / 1000))
        if attempts is not None:
            retried = [d.entry_id for d in ok if d.attempt > 1]
            if retried:
                await self.redis.hdel(failures_key(*parse_key(key)), *retried)
        return [d.entry_id for d in ok]

    async def _run_handler(self, key: str, deliveries: list[Delivery[M]]) -> dict[str, BaseException]:
        labels = self._labels[key]
        labels.inflight.inc(len(deliveries))
        # Most batches finish long before a third of the lease: only then is a renewal task started.
        renewal: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            self.lease_ms / 3000,
            lambda: renewal.append(
                asyncio.create_task(self._renew_lease(key, [d.entry_id for d in deliveries]))
            ),
        )
        started = time.perf_counter()
        try:
            failures = await self._handle(deliveries)
            if failures and self.transient_retry_s > 0:
                await self._retry_transient(key, deliveries, failures)
        finally:
            timer.cancel()
            for task in renewal:
                task.cancel()
            labels.inflight.dec(len(deliveries))
            labels.handler.observe(time.perf_counter() - started)
        return failures

    async def _handle(self, deliveries: list[Delivery[M]]) -> dict[str, BaseException]:
        failures: dict[str, BaseException] = {}
        if self.handle_batch is not None:
            try:
                failures.update(await self.handle_batch(deliveries) or {})
            except Exception as exc:
                failures.update((d.entry_id, exc) for d in deliveries)
        else:
            await self._handle_each(deliveries, failures)
        return failures

    async def _retry_transient(
        self, key: str, deliveries: list[Delivery[M]], failures: dict[str, BaseException]
    ) -> None:
        """Handle again, in place, the entries whose handler met an outage, until it passes, fails
        otherwise, `transient_retry_s` runs out or the consumer stops; `failures` is updated. The
        entries stay in hand (their lease renewed), so the retries count no delivery."""
        deadline = time.monotonic() + self.transient_retry_s
        pause = TRANSIENT_PAUSE_S
        while True:
            waiting = [d for d in deliveries if isinstance(failures.get(d.entry_id), OUTAGES)]
            if not waiting or time.monotonic() + pause > deadline:
                return
            log.warning(
                "%d entries on %s met an outage (%r); handling them again in %.1fs",
                len(waiting),
                key,
                failures[waiting[0].entry_id],
                pause,
            )
            if self._stop is None:
                await asyncio.sleep(pause)
            elif await sleep_unless(self._stop, pause):
                return  # stopping: they stay pending, for this consumer's restart or a peer
            self._labels[key].transient.inc(len(waiting))
            for delivery in waiting:
                del failures[delivery.entry_id]
            failures.update(await self._handle(waiting))
            pause = min(pause * 2, TRANSIENT_PAUSE_MAX_S)

    async def _handle_each(self, deliveries: list[Delivery[M]], failures: dict[str, BaseException]) -> None:
        assert self.handle is not None
        handle, limiter = self.handle, self._limiter

        async def one(delivery: Delivery[M]) -> None:
            # Runs in a context of its own (see _start_eagerly), so the ids need no reset.
            logs.bind(getattr(delivery.message, "intent_id", None), delivery.entry_id, delivery.key)
            await limiter.acquire()
            try:
                await handle(delivery)
            except Exception as exc:
                failures[delivery.entry_id] = exc
            finally:
                limiter.release()

        if self.concurrency == 1:
            for delivery in deliveries:
                await asyncio.get_running_loop().create_task(
                    one(delivery), context=contextvars.copy_context()
                )
            return
        waiting = [task for d in deliveries if (task := start_eagerly(one(d))) is not None]
        if waiting:
            await asyncio.gather(*waiting)

    async def _ack_ids(self, key: str, ids: list[str]) -> None:
        acked = await self.redis.xack(key, self.group, *ids)
        self._count_acks(key, len(ids), int(acked))

    def _count_acks(self, key: str, sent: int, acked: int) -> None:
        labels = self._labels[key]
        labels.ack.inc(acked)
        if acked < sent:
            # Someone else acked or claimed them meanwhile (we were slower than the lease): harmless,
            # because handlers are idempotent, but worth seeing.
            labels.stale_ack.inc(sent - acked)

    async def _on_failures(
        self,
        key: str,
        failed: Sequence[Delivery[M]],
        failures: Mapping[str, BaseException],
        payloads: Mapping[str, bytes],
    ) -> None:
        errors = {
            d.entry_id: f"{type(failures[d.entry_id]).__name__}: {failures[d.entry_id]}" for d in failed
        }
        for delivery in failed:
            exc = failures[delivery.entry_id]
            with logs.bound(
                intent_id=getattr(delivery.message, "intent_id", None), entry_id=delivery.entry_id
            ):
                if isinstance(exc, PermanentError):
                    log.warning(
                        "dead-lettering %s %s (reason %s): %s",
                        key,
                        delivery.entry_id,
                        exc.reason,
                        errors[delivery.entry_id],
                    )
                elif delivery.attempt >= self.max_deliveries:
                    log.error(
                        "dead-lettering %s %s after %d deliveries: %s",
                        key,
                        delivery.entry_id,
                        delivery.attempt,
                        errors[delivery.entry_id],
                        exc_info=exc,
                    )
                else:
                    log.warning(
                        "handler failed on %s (delivery %d of %d, will retry): %s",
                        key,
                        delivery.attempt,
                        self.max_deliveries,
                        errors[delivery.entry_id],
                        exc_info=exc,
                    )
        records = await dlq.record_failures(self.redis, key, errors)
        permanent = [d for d in failed if isinstance(failures[d.entry_id], PermanentError)]
        retryable = [d for d in failed if not isinstance(failures[d.entry_id], PermanentError)]
        last = [d for d in retryable if d.attempt >= self.max_deliveries]
        again = [d.entry_id for d in retryable if d.attempt < self.max_deliveries]
        letters = [
            dlq.DeadLetter(
                d.entry_id,
                payloads[d.entry_id],
                getattr(failures[d.entry_id], "reason", dlq.REASON_UNRECOVERABLE),
                errors[d.entry_id],
                d.attempt,
                records[d.entry_id].first_ms,
                records[d.entry_id].last_ms,
            )
            for d in permanent
        ]
        if last or letters:
            await dlq.move(
                self.redis,
                key,
                self.group,
                self.consumer,
                letters
                + [
                    dlq.DeadLetter(
                        d.entry_id,
                        payloads[d.entry_id],
                        dlq.REASON_MAX_DELIVERIES,
                        errors[d.entry_id],
                        d.attempt,
                        records[d.entry_id].first_ms,
                        records[d.entry_id].last_ms,
                    )
                    for d in last
                ],
            )
        if again:
            # Make the entries look idle for (lease - retry delay): the reclaimer takes them again
            # after the retry delay instead of a whole lease. JUSTID keeps the delivery count.
            await self.redis.xclaim(
                key,
                self.group,
                self.consumer,
                0,
                list[Any](again),
                idle=max(0, self.lease_ms - self.retry_delay_ms),
                justid=True,
            )
            self._labels[key].retry.inc(len(again))

    async def _exhausted_letters(
        self, key: str, entries: Sequence[tuple[str, bytes | None, int]]
    ) -> list[dlq.DeadLetter]:
        """Letters for entries seen again after their last allowed delivery (`attempt` counts this one)."""
        records = await dlq.load_failures(self.redis, key, [e[0] for e in entries])
        letters = []
        for entry_id, payload, attempt in entries:
            record = records.get(entry_id)
            if payload is None:
                reason, error = (
                    dlq.REASON_PAYLOAD_DELETED,
                    "the entry was trimmed or deleted before it was acked",
                )
            else:
                reason = dlq.REASON_MAX_DELIVERIES
                error = (
                    record.error
                    if record
                    else (f"delivered {attempt - 1} times without an ack (the consumer died or stalled)")
                )
            letters.append(
                dlq.DeadLetter(
                    entry_id,
                    payload,
                    reason,
                    error,
                    attempt - 1,
                    record.first_ms if record else None,
                    record.last_ms if record else None,
                )
            )
        return letters

    async def _renew_lease(self, key: str, ids: list[str]) -> None:
        """Keep entries being handled from looking idle, so no peer reclaims healthy work."""
        interval = self.lease_ms / 3000
        while True:
            try:
                owned = await self._owned(key, ids)
                if owned:
                    await self.redis.xclaim(key, self.group, self.consumer, 0, list[Any](owned), justid=True)
                if len(owned) < len(ids):
                    log.warning(
                        "%d entries of a batch on %s were taken over by another consumer",
                        len(ids) - len(owned),
                        key,
                    )
                    ids = owned
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("lease renewal on %s failed: %s", key, exc)
            await asyncio.sleep(interval)

    async def _owned(self, key: str, ids: list[str]) -> list[str]:
        if not ids:
            return []
        rows = await self.redis.xpending_range(
            key, self.group, min=ids[0], max=ids[-1], count=len(ids) + 1000, consumername=self.consumer
        )
        mine = {_text(r["message_id"]) for r in rows}
        return [i for i in ids if i in mine]

    # -- reclaiming ----------------------------------------------------------------------------

    async def _reclaim_loop(self, key: str, stop: asyncio.Event) -> None:
        passes = 0
        while not await sleep_unless(stop, self.claim_interval_ms / 1000):
            try:
                await self.reclaim(key)
                passes += 1
                if passes % 60 == 0:
                    await self._remove_stale_consumers(key)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("reclaim on %s skipped: %s", key, exc)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("reclaim on %s skipped: the group does not exist (yet)", key)

    async def reclaim(self, key: str) -> int:
        """One reclaim pass over `key`: dead-letter exhausted idle entries, claim and handle the rest."""
        await self._dead_letter_exhausted(key)
        handled = 0
        cursor: bytes | str = b"0-0"
        for _ in range(RECLAIM_PAGE_BUDGET):
            reply = await self.redis.xautoclaim(
                key, self.group, self.consumer, self.lease_ms, start_id=cursor, count=self.count
            )
            cursor, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            labels = self._labels[key]
            if deleted:
                # The payload was trimmed away before anyone acked it: a lost message. Redis has
                # already dropped these ids from the pending list; all we can do is shout.
                labels.claim_deleted.inc(len(deleted))
                log.error(
                    "LOST: %d pending entries of %s were trimmed or deleted before ack: %s",
                    len(deleted),
                    key,
                    [_text(i) for i in deleted][:20],
                )
                await self.redis.hdel(failures_key(*parse_key(key)), *[_text(i) for i in deleted])
            if claimed:
                labels.claimed.inc(len(claimed))
                claimed_ids = {_text(e[0]) for e in claimed}
                self._reclaiming |= claimed_ids
                try:
                    ids = await self._process(
                        key, claimed, await self._attempts(key, [e[0] for e in claimed])
                    )
                    if ids:
                        await self._ack_ids(key, ids)
                finally:
                    self._reclaiming -= claimed_ids
                handled += len(claimed)
            if _text(cursor) == "0-0":
                break
        return handled

    async def _dead_letter_exhausted(self, key: str) -> None:
        """Entries idle past the lease after their last allowed delivery: the handler never finished."""
        start = "-"
        for _ in range(RECLAIM_PAGE_BUDGET):
            rows = await self.redis.xpending_range(
                key, self.group, min=start, max="+", count=100, idle=self.lease_ms
            )
            spent = [
                (_text(r["message_id"]), int(r["times_delivered"]))
                for r in rows
                if int(r["times_delivered"]) >= self.max_deliveries
            ]
            if spent:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for entry_id, _ in spent:
                        pipe.xrange(key, min=entry_id, max=entry_id)
                    found = await pipe.execute()
                entries = [
                    (entry_id, hits[0][1].get(PAYLOAD_FIELD) if hits else None, count + 1)
                    for (entry_id, count), hits in zip(spent, found, strict=True)
                ]
                letters = await self._exhausted_letters(key, entries)
                for letter in letters:
                    log.error(
                        "dead-lettering %s %s after %d deliveries: %s",
                        key,
                        letter.entry_id,
                        letter.attempts,
                        letter.error,
                    )
                await dlq.move(self.redis, key, self.group, self.consumer, letters)
            if len(rows) < 100:
                return
            start = "(" + _text(rows[-1]["message_id"])

    async def _remove_stale_consumers(self, key: str) -> None:
        for row in await self.redis.xinfo_consumers(key, self.group):
            name = _text(row["name"])
            if name != self.consumer and int(row["pending"]) == 0 and int(row["idle"]) > STALE_CONSUMER_MS:
                # A live consumer is never this idle: every blocking read (≤ 2 s) resets its idle time.
                dropped = await self.redis.xgroup_delconsumer(key, self.group, name)
                log.info("removed idle consumer %s from %s/%s (pending %s)", name, key, self.group, dropped)


def _fields_text(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {
        f"field_{k.decode(errors='replace')}": v.decode(errors="replace")[:500] for k, v in fields.items()
    }
