"""What the orchestrator does about PSP messages that were dead-lettered (docs/psp.md).

- A job in `pm:psp:<psp>:jobs:dlq`: the adapter never finished it. If `pm.psp_tx_map` proves that
  no confirm can have reached the PSP (no row, or a row still `recorded` / `inquired`), the row is
  finished FAILED `JOB_DEAD_LETTERED` in one guarded statement — a fence: the adapter never confirms
  past a final row, so a late or replayed delivery cannot pay — and that result is published, so the
  saga voids the authorization and fails the intent like any PSP refusal. Otherwise (`confirm_sent`)
  the PSP may have paid: an alert is raised and the intent waits for the adapter's status polling.
- A result in `pm:psp:results:dlq`: PM could not apply what a PSP said (it may have moved money):
  an alert (metric, log, `pm.reconciliation_alert` row) for review; `pm dlq replay` puts it back.

The DLQs are read, never consumed: records stay for `pm dlq` to show. Each record is looked at once
per process (and again after a restart: both reviews are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis

from pm_orchestrator import store
from pm_orchestrator.saga import ALERTS
from pm_shared.db import DATABASE_ERRORS, Pool
from pm_shared.messages import PspJob, PspResult, now
from pm_shared.psp.attempts import result_from_row
from pm_shared.streams import Publisher, dlq
from pm_shared.streams.names import IPPS_JOBS, PSP_RESULTS, QP_JOBS

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "pm_psp_dead_letters_reviewed_total",
    "PSP jobs and results found in their DLQs, by stream and what was done (failed, alert, republished).",
    ["stream", "outcome"],
)

JOB_DEAD_LETTERED = "JOB_DEAD_LETTERED"
_job = msgspec.json.Decoder(PspJob)
_result = msgspec.json.Decoder(PspResult)


@dataclass
class DeadLetters:
    pool: Pool
    redis: Redis
    publisher: Publisher
    partitions: int
    interval_s: float
    _seen: set[tuple[str, str]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.review_once()
            except (*DATABASE_ERRORS, ConnectionError) as exc:
                log.warning("DLQ review interrupted (%r); trying again", exc)
            except Exception:  # the next review tries again; a crash here would stop the reviews
                log.exception("DLQ review failed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def review_once(self) -> int:
        """Look at every DLQ record not looked at yet; returns how many were."""
        job_keys = dlq.dlq_keys([IPPS_JOBS.name, QP_JOBS.name], self.partitions)
        result_keys = dlq.dlq_keys([PSP_RESULTS.name], self.partitions)
        present: set[tuple[str, str]] = set()
        reviewed = 0
        for keys, review in ((job_keys, self._job), (result_keys, self._result)):
            for entry in await dlq.entries(self.redis, keys):
                seen = (entry.dlq, entry.id)
                present.add(seen)
                if seen in self._seen:
                    continue
                await review(entry)
                self._seen.add(seen)
                reviewed += 1
        self._seen &= present  # purged or replayed records are forgotten
        return reviewed

    async def _alert(
        self, kind: str, intent_id: str | None, entry: dlq.DlqEntry, detail: dict[str, object]
    ) -> bool:
        detail = {**entry.fields, **detail}
        async with self.pool.acquire() as conn:
            added = await store.insert_alert(conn, kind, intent_id, entry.dlq, entry.id, detail)
        if added:
            ALERTS.labels(kind).inc()
            log.error(
                "reconciliation alert %s: %s %s (intent %s): %s",
                kind,
                entry.dlq,
                entry.id,
                intent_id or "unknown",
                entry.fields.get("error", ""),
                extra={"intent_id": intent_id},
            )
        return added

    async def _job(self, entry: dlq.DlqEntry) -> None:
        try:
            job = _job.decode(entry.payload or b"")
        except msgspec.DecodeError as exc:
            await self._alert("psp_job_unreadable", None, entry, {"decode_error": str(exc)})
            DEAD_LETTERS.labels(entry.original_stream, "alert").inc()
            return
        async with self.pool.acquire() as conn:
            row = await store.fence_dead_job(conn, job, f"{job.idempotency_key}:dead-lettered", now())
        if row is None or row["phase"] != "final":
            # A confirm may have reached the PSP: only its status can say what happened. The adapter's
            # status sweep keeps asking; an operator looks at it meanwhile.
            phase = row["phase"] if row is not None else None
            await self._alert("psp_job_dead_lettered", job.intent_id, entry, {"phase": phase})
            DEAD_LETTERS.labels(entry.original_stream, "alert").inc()
            return
        fenced = row["failure_code"] == JOB_DEAD_LETTERED
        if fenced:
            log.warning(
                "intent %s: PSP job %s dead-lettered before it reached %s; failing the intent",
                job.intent_id,
                job.message_id,
                job.psp,
                extra={"intent_id": job.intent_id},
            )
        # Final either way: publish the outcome (the saga ignores it if the intent has moved on).
        await self.publisher.publish(PSP_RESULTS, result_from_row(row))
        DEAD_LETTERS.labels(entry.original_stream, "failed" if fenced else "republished").inc()

    async def _result(self, entry: dlq.DlqEntry) -> None:
        intent_id: str | None = None
        detail: dict[str, object] = {}
        try:
            result = _result.decode(entry.payload or b"")
            intent_id = result.intent_id
            detail = {"status": result.status, "psp": result.psp, "pspReference": result.psp_reference}
        except msgspec.DecodeError as exc:
            detail = {"decode_error": str(exc)}
        await self._alert("psp_result_dead_lettered", intent_id, entry, detail)
        DEAD_LETTERS.labels(entry.original_stream, "alert").inc()
