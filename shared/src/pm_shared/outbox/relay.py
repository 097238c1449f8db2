"""The outbox relay: publishes rows left unpublished after their commit (a failed publish, a crash)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from prometheus_client import Counter, Gauge

from pm_shared import errors, logs
from pm_shared.db import DATABASE_ERRORS, Conn, Pool
from pm_shared.outbox import queries as q
from pm_shared.outbox.writer import PUBLISH_ERRORS
from pm_shared.streams.publisher import PAYLOAD_FIELD, Publisher

log = logging.getLogger(__name__)

RELAYED = Counter("pm_outbox_relayed_total", "Outbox rows published by the relay.")
RELAY_FAILURES = Counter("pm_outbox_relay_failures_total", "Relay passes stopped by a failed publish.")
PRUNED = Counter("pm_outbox_pruned_total", "Published outbox rows deleted after the retention period.")
OLDEST_UNPUBLISHED_AGE = Gauge(
    "pm_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row (0 when none)."
)

# The longest pause between passes while PostgreSQL or Redis keeps failing.
MAX_BACKOFF_S = 30.0


class Relay:
    """Publishes outbox rows older than `min_age_s` that are still unpublished, `batch` rows per pass.

    Each pass is one transaction: claim rows with FOR UPDATE SKIP LOCKED, publish their stored
    payloads, mark them. Several relays may run at once; no row is published by two of them at the
    same time. A row can still be published twice (a crash between publish and commit, or its
    writer publishing it late), which consumers absorb by deduplicating on the message id.
    """

    def __init__(
        self,
        pool: Pool,
        publisher: Publisher,
        *,
        min_age_s: float = 5.0,
        batch: int = 500,
        interval_s: float = 1.0,
        retention_s: float = 3_600.0,
        prune_interval_s: float = 60.0,
        prune_batch: int = 10_000,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.min_age_s = min_age_s
        self.batch = batch
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.prune_interval_s = prune_interval_s
        self.prune_batch = prune_batch
        self._pruned_at = float("-inf")

    async def prune(self, *, max_batches: int = 10) -> int:
        """Delete published rows past the retention period, up to `max_batches` batches; returns how many."""
        deleted = 0
        for _ in range(max_batches):
            async with self.pool.acquire() as conn:
                status = await conn.execute(q.PRUNE_PUBLISHED, self.retention_s, self.prune_batch)
            count = int(status.split()[-1])
            deleted += count
            if count < self.prune_batch:
                break
        PRUNED.inc(deleted)
        return deleted

    async def run_once(self) -> int:
        """One pass; returns how many rows were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(q.CLAIM_UNPUBLISHED, self.min_age_s, self.batch)
            published = await self._publish(conn, rows) if rows else 0
            age = await conn.fetchval(q.OLDEST_UNPUBLISHED_AGE_S)
        OLDEST_UNPUBLISHED_AGE.set(max(0.0, age or 0.0))
        RELAYED.inc(published)
        return published

    async def _publish(self, conn: Conn, rows: list[asyncpg.Record]) -> int:
        # Grouped per partition key in id order, so each intent's messages keep their order. A key
        # that fails is left for the next pass from its first unpublished row on; the other keys go on.
        by_key: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            by_key.setdefault(self.publisher.key_for(row["stream"], row["intent_id"]), []).append(row)
        done: list[int] = []
        failed: list[int] = []
        errors: list[BaseException] = []
        for key, key_rows in by_key.items():
            sent = 0
            try:
                await self.publisher.admit(key, len(key_rows))
                for row in key_rows:
                    await self.publisher.add(key, {PAYLOAD_FIELD: bytes(row["payload"])})
                    done.append(row["id"])
                    sent += 1
            except PUBLISH_ERRORS as exc:
                errors.append(exc)
                failed.extend(row["id"] for row in key_rows[sent:])
        if done:
            await conn.execute(q.MARK_PUBLISHED_BY_ID, done)
        if errors:
            RELAY_FAILURES.inc()
            log.warning("outbox relay: %d rows not published (%r); next pass retries", len(failed), errors[0])
            await conn.execute(q.RECORD_FAILURE, failed, repr(errors[0]))
        return len(done)

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until `stop` is set; a full batch is followed at once by the next pass.

        A pass that fails for a reason the next one may not meet (see `worth_another_pass`) is
        logged and tried again after a backoff, at least as long as a `RetryLater` asks; any other
        error is a bug and ends the relay (and with it, supervised, the process).
        """
        backoff = self.interval_s
        while not stop.is_set():
            try:
                published = await self.run_once()
                if time.monotonic() - self._pruned_at >= self.prune_interval_s:
                    self._pruned_at = time.monotonic()
                    await self.prune()
            except Exception as exc:
                if not worth_another_pass(exc):
                    raise
                pause = max(backoff, errors.retry_after_s(exc) or 0.0)
                logs.failure(log, exc, "outbox relay pass failed; retrying in %.1fs", pause)
                backoff = min(max(backoff, 0.1) * 2, MAX_BACKOFF_S)
            else:
                backoff = self.interval_s
                if published >= self.batch:
                    continue
                pause = self.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)


def worth_another_pass(exc: BaseException) -> bool:
    """A transient failure (`errors.classify`: an outage, a `RetryLater`), or PostgreSQL or Redis
    refusing a statement (a migration not applied yet, Redis out of memory): the next pass may succeed."""
    return errors.classify(exc).transient or isinstance(exc, (*PUBLISH_ERRORS, *DATABASE_ERRORS))
