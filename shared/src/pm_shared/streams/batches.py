"""Handling one batch of entries: decode, hand over, settle; returns the ids to ack.

An entry that cannot be handed over is dead-lettered at once: one without a payload (trimmed or
deleted before it was acked), one that does not decode (retrying cannot fix it), one seen again
after its last allowed delivery. The others go to the handler (per batch, or per message with at
most `concurrency` calls at once). While it runs long its entries' lease is renewed, so no peer
reclaims healthy work. Entries whose handler met an outage (`errors.Verdict.OUTAGE`) are handled
again in place, with backoff, for up to `transient_retry_s`, without counting a delivery: an
outage of a few seconds must not push every message in hand towards the DLQ. What still failed is
settled by `failures.settle`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

import msgspec

from pm_shared import errors, logs
from pm_shared.streams import dlq, failures
from pm_shared.streams.concurrency import YIELD_EVERY, Limiter, sleep_unless, start_eagerly
from pm_shared.streams.connection import TRANSIENT_ERRORS
from pm_shared.streams.delivery import BatchHandler, Delivery, MessageHandler, RawEntry
from pm_shared.streams.membership import Membership
from pm_shared.streams.names import failures_key, parse_key
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_shared.streams.stats import id_ms

log = logging.getLogger(__name__)

M = TypeVar("M")

YIELD_BYTES = 256 * 1024
"""Payload bytes decoded between two turns of the event loop (at most `YIELD_EVERY` entries)."""

# Pauses between the in-place calls of a handler that met an outage, doubling.
TRANSIENT_PAUSE_S = 0.2
TRANSIENT_PAUSE_MAX_S = 5.0

Sorted = tuple[list[Delivery[M]], dict[str, bytes], list[dlq.DeadLetter]]
"""A batch sorted out: the deliveries, their payloads by entry id, the entries to dead-letter."""


class Batches(Generic[M]):
    """Handles the batches a consumer reads (see the module docstring)."""

    def __init__(
        self,
        seat: Membership,
        decoder: msgspec.json.Decoder[M],
        handle_batch: BatchHandler[M] | None,
        handle: MessageHandler[M] | None,
    ) -> None:
        self.seat = seat
        self.decoder = decoder
        self.handle_batch = handle_batch
        self.handle = handle
        self.limiter = Limiter(seat.tuning.concurrency)
        self.stop: asyncio.Event | None = None
        """The consumer's stop event, once it runs: in-place retries end when it is set."""

    async def process(self, key: str, raw: Sequence[RawEntry], attempts: dict[str, int] | None) -> list[str]:
        """Handle a batch; returns the ids to ack (dead letters and failures are settled here).

        `attempts` are the entries' delivery counts when they were delivered before (None: first
        delivery of every entry, as for a read of new entries).
        """
        labels = self.seat.labels[key]
        labels.batch.observe(len(raw))
        deliveries, payloads, dead = await self._sort(key, raw, attempts)
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
            await self.seat.dead_letter(key, dead)
        if not deliveries:
            return []
        failed = await self._run_handler(key, deliveries)
        ok = [d for d in deliveries if d.entry_id not in failed] if failed else deliveries
        if failed:
            await failures.settle(
                self.seat, key, [d for d in deliveries if d.entry_id in failed], failed, payloads
            )
        if ok:
            labels.e2e.observe(max(0.0, time.time() - id_ms(ok[0].entry_id) / 1000))
        if attempts is not None:
            retried = [d.entry_id for d in ok if d.attempt > 1]
            if retried:
                await self.seat.redis.hdel(failures_key(*parse_key(key)), *retried)
        return [d.entry_id for d in ok]

    async def _sort(self, key: str, raw: Sequence[RawEntry], attempts: dict[str, int] | None) -> Sorted[M]:
        deliveries: list[Delivery[M]] = []
        payloads: dict[str, bytes] = {}
        dead: list[dlq.DeadLetter] = []
        exhausted: list[tuple[str, bytes | None, int]] = []
        decode = self.decoder.decode
        decoded = 0
        for index, (entry_id_b, fields) in enumerate(raw):
            if index % YIELD_EVERY == YIELD_EVERY - 1 or decoded >= YIELD_BYTES:
                # `take_turns`, inline (this loop runs for every entry read), and by size as well:
                # decoding takes time in proportion to the bytes decoded.
                decoded = 0
                await asyncio.sleep(0)
            entry_id = entry_id_b.decode()
            attempt = attempts.get(entry_id, 1) if attempts is not None else 1
            payload = fields.get(PAYLOAD_FIELD)
            if not fields:
                self.seat.labels[key].deleted.inc()
                error = "the entry was trimmed or deleted before it was acked"
                dead.append(dlq.DeadLetter(entry_id, None, dlq.REASON_PAYLOAD_DELETED, error, attempt))
            elif payload is None:
                error = "the entry has no 'm' field"
                extra = _fields_text(fields)
                dead.append(
                    dlq.DeadLetter(entry_id, None, dlq.REASON_DECODE_ERROR, error, attempt, extra=extra)
                )
            elif attempt > self.seat.tuning.max_deliveries:
                exhausted.append((entry_id, payload, attempt))
            else:
                decoded += len(payload)
                try:
                    message = decode(payload)
                except msgspec.DecodeError as exc:
                    dead.append(dlq.DeadLetter(entry_id, payload, dlq.REASON_DECODE_ERROR, str(exc), attempt))
                    continue
                deliveries.append(Delivery(entry_id=entry_id, key=key, message=message, attempt=attempt))
                payloads[entry_id] = payload
        if exhausted:
            dead.extend(await failures.exhausted_letters(self.seat, key, exhausted))
        return deliveries, payloads, dead

    async def _run_handler(self, key: str, deliveries: list[Delivery[M]]) -> dict[str, BaseException]:
        labels = self.seat.labels[key]
        labels.inflight.inc(len(deliveries))
        # Most batches finish long before a third of the lease: only then is a renewal task started.
        renewal: list[asyncio.Task[None]] = []
        ids = [d.entry_id for d in deliveries]
        handled = asyncio.Event()
        timer = asyncio.get_running_loop().call_later(
            self.seat.tuning.lease_ms / 3000,
            lambda: renewal.append(asyncio.create_task(self._renew_lease(key, ids, handled))),
        )
        started = time.perf_counter()
        try:
            failed = await self._handle(deliveries)
            if failed and self.seat.tuning.transient_retry_s > 0:
                await self._retry_outages(key, deliveries, failed)
        finally:
            timer.cancel()
            handled.set()
            for task in renewal:
                task.cancel()
            labels.inflight.dec(len(deliveries))
            labels.handler.observe(time.perf_counter() - started)
        for outcome in await asyncio.gather(*renewal, return_exceptions=True):
            if isinstance(outcome, Exception):
                # Seen, but the batch is still settled: what was handled is acked (a peer that took
                # an entry over meanwhile handles it again, idempotently), rather than redelivered.
                log.error("lease renewal on %s died; the batch is settled as handled", key, exc_info=outcome)
        return failed

    async def _handle(self, deliveries: list[Delivery[M]]) -> dict[str, BaseException]:
        failed: dict[str, BaseException] = {}
        if self.handle_batch is not None:
            try:
                failed.update(await self.handle_batch(deliveries) or {})
            except Exception as exc:
                failed.update((d.entry_id, exc) for d in deliveries)
        else:
            await self._handle_each(deliveries, failed)
        return failed

    async def _retry_outages(
        self, key: str, deliveries: list[Delivery[M]], failed: dict[str, BaseException]
    ) -> None:
        """Handle again, in place, the entries whose handler met an outage, until it passes, fails
        otherwise, `transient_retry_s` runs out or the consumer stops; `failed` is updated. The
        entries stay in hand (their lease renewed), so the retries count no delivery."""
        deadline = time.monotonic() + self.seat.tuning.transient_retry_s
        pause = TRANSIENT_PAUSE_S
        while True:
            waiting = [
                d
                for d in deliveries
                if d.entry_id in failed and errors.classify(failed[d.entry_id]) is errors.Verdict.OUTAGE
            ]
            if not waiting or time.monotonic() + pause > deadline:
                return
            log.warning(
                "%d entries on %s met an outage (%r); handling them again in %.1fs",
                len(waiting),
                key,
                failed[waiting[0].entry_id],
                pause,
            )
            if self.stop is None:
                await asyncio.sleep(pause)
            elif await sleep_unless(self.stop, pause):
                return  # stopping: they stay pending, for this consumer's restart or a peer
            self.seat.labels[key].transient.inc(len(waiting))
            for delivery in waiting:
                del failed[delivery.entry_id]
            failed.update(await self._handle(waiting))
            pause = min(pause * 2, TRANSIENT_PAUSE_MAX_S)

    async def _handle_each(self, deliveries: list[Delivery[M]], failed: dict[str, BaseException]) -> None:
        assert self.handle is not None
        handle, limiter = self.handle, self.limiter

        async def one(delivery: Delivery[M]) -> None:
            # Runs in a context of its own (see start_eagerly), so the ids need no reset.
            logs.bind(getattr(delivery.message, "intent_id", None), delivery.entry_id, delivery.key)
            await limiter.acquire()
            try:
                await handle(delivery)
            except Exception as exc:
                failed[delivery.entry_id] = exc
            finally:
                limiter.release()

        if self.seat.tuning.concurrency == 1:
            for delivery in deliveries:
                await asyncio.get_running_loop().create_task(
                    one(delivery), context=contextvars.copy_context()
                )
            return
        waiting = [task for d in deliveries if (task := start_eagerly(one(d))) is not None]
        if waiting:
            await asyncio.gather(*waiting)

    async def _renew_lease(self, key: str, ids: list[str], handled: asyncio.Event) -> None:
        """Keep entries being handled from looking idle, so no peer reclaims healthy work, until
        `handled` is set. The task is cancelled too, but a cancellation can be lost inside a redis-py
        command (seen with redis-py 8.1 on Python 3.11): a renewal that went on would keep the batch
        from settling and its entries pending for ever, so the loop also ends on the event."""
        interval = self.seat.tuning.lease_ms / 3000
        while not handled.is_set():
            try:
                owned = await self.seat.owned(key, ids)
                if owned:
                    await self.seat.claim(key, owned)
                if len(owned) < len(ids):
                    log.warning(
                        "%d entries of a batch on %s were taken over by another consumer",
                        len(ids) - len(owned),
                        key,
                    )
                    ids = owned
            except TRANSIENT_ERRORS as exc:
                log.warning("lease renewal on %s failed: %s", key, exc)
            await sleep_unless(handled, interval)


def _fields_text(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {
        f"field_{k.decode(errors='replace')}": v.decode(errors="replace")[:500] for k, v in fields.items()
    }
