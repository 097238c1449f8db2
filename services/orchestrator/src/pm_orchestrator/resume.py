"""The startup reconciler and the stalled-intent sweep (docs/saga.md): nothing waits forever.

At start every open intent is resumed from the state it is in; afterwards, every
`resume_interval_s`, each intent that has not moved for `resume_after_s`. Resuming a CREATED
intent takes it in again (the guarded move makes a race with its own message harmless); resuming
one that awaits a ledger step sends that step's command again under a new message id — the
transfers have the same ids, so the ledger applies them at most once and answers EXISTS.

An intent awaiting a PSP step is the adapter's while `pm.psp_tx_map` shows its attempt under way (a
payer has ten minutes to pay a QR; an UNKNOWN payout is polled until the PSP decides): it is not
resent then. Its job is sent again (same idempotency key) only when no attempt is recorded — the job
was never read — or the attempt is final and its result did not arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from pm_orchestrator import plan as planning
from pm_orchestrator import store
from pm_orchestrator.saga import Job, Saga
from pm_orchestrator.states import CREATED
from pm_shared import logs
from pm_shared.intents.record import IntentRow
from pm_shared.messages import psp_key
from pm_shared.outbox import Outgoing
from pm_shared.streams import Publisher
from pm_shared.streams.errors import BackPressureError

log = logging.getLogger(__name__)

RESUMED = Counter(
    "pm_intents_resumed_total", "Stalled intents resumed, by the state they were in.", ["state"]
)
GIVEN_UP = Counter(
    "pm_intents_resume_given_up_total",
    "Stalled intents whose command was sent again MAX_RESENDS times without an answer (manual review).",
)

# A command answered by nothing after this many resends is not a lost message but a command the
# writer cannot apply (it dead-letters it each time): resending it forever would only grow the DLQ.
MAX_RESENDS = 5

PAGE = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NIL = uuid.UUID(int=0)


class Resumer:
    def __init__(
        self,
        saga: Saga,
        planner: planning.Planner,
        publisher: Publisher,
        *,
        resume_after_s: float,
        interval_s: float,
    ) -> None:
        self.saga = saga
        self.planner = planner
        self.publisher = publisher
        self.resume_after_s = resume_after_s
        self.interval_s = interval_s
        self._resent: dict[str, float] = {}
        self._resends: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        first = True
        while not stop.is_set():
            before = datetime.now(UTC) - (timedelta(0) if first else timedelta(seconds=self.resume_after_s))
            try:
                count = await self.sweep(before, stop)
            except Exception as exc:  # one failed pass must not end the sweeps: the next one tries again
                logs.failure(log, exc, "resume sweep interrupted; trying again")
            else:
                if count or first:
                    log.info("resumed %d open intent(s) not moved since %s", count, before.isoformat())
                first = False
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def sweep(self, before: datetime, stop: asyncio.Event | None = None) -> int:
        """Resume every open intent not moved since `before`; returns how many were resumed."""
        cursor: tuple[datetime, uuid.UUID] = (_EPOCH, _NIL)
        resumed = 0
        now = time.monotonic()
        self._resent = {k: v for k, v in self._resent.items() if now - v < self.resume_after_s}
        stalled: set[str] = set()
        complete = False
        while stop is None or not stop.is_set():
            async with self.saga.pool.acquire() as conn:
                records = await store.stalled_intents(conn, before, PAGE, cursor)
            rows = [IntentRow.from_record(r) for r in records]
            stalled.update(row.id for row in rows)
            if rows:
                cursor = (records[-1]["updated_at"], records[-1]["id"])
                resumed += await self._resume(rows)
            if len(records) < PAGE:
                complete = True
                break
        if complete:
            # An intent that moved on is not stalled any more: forget its resends, or the count of
            # every intent ever resumed would stay in memory for the life of the process.
            self._resends = {k: v for k, v in self._resends.items() if k in stalled}
        return resumed

    async def _resume(self, rows: list[IntentRow]) -> int:
        created = [r for r in rows if r.state == CREATED]
        if created:
            await self.saga.run([Job(None, r.id, None) for r in created])
            RESUMED.labels(CREATED).inc(len(created))
        psp_rows = [r for r in rows if r.step in self.planner.registry.psp]
        busy: set[str] = set()
        if psp_rows:
            keys = [psp_key(r.id, r.step or "") for r in psp_rows]
            async with self.saga.pool.acquire() as conn:
                phases = await store.psp_phases(conn, keys)
            busy = {
                r.id for r, key in zip(psp_rows, keys, strict=True) if phases.get(key, "final") != "final"
            }
        commands: list[Outgoing] = []
        for row in rows:
            if row.state == CREATED or row.id in self._resent or row.id in busy:
                continue
            count = self._resends.get(row.id, 0)
            if count >= MAX_RESENDS:
                if count == MAX_RESENDS:
                    self._resends[row.id] = count + 1
                    GIVEN_UP.inc()
                    log.error(
                        "intent %s is %s awaiting %r after %d resends: not resent again; look for its "
                        "message in the DLQs (`pm dlq list`)",
                        row.id,
                        row.state,
                        row.step,
                        MAX_RESENDS,
                        extra={"intent_id": row.id},
                    )
                continue
            command = self.planner.resend(row)
            if command is None:
                log.error(
                    "intent %s is %s awaiting %r: nothing to resume it with", row.id, row.state, row.step
                )
                continue
            commands.append(command)
            self._resent[row.id] = time.monotonic()
            self._resends[row.id] = count + 1
            RESUMED.labels(row.state).inc()
        sent = 0
        for stream in sorted({c.stream for c in commands}):
            messages = [c.message for c in commands if c.stream == stream]
            try:
                await self.publisher.publish_many(stream, messages)
            except BackPressureError:
                # The consumer is behind: these intents are not lost, the next sweep tries again.
                for message in messages:
                    self._resent.pop(message.intent_id, None)
                    self._resends[message.intent_id] -= 1
                log.warning("%s is full; %d resends wait for the next sweep", stream, len(messages))
                continue
            sent += len(messages)
        return len(created) + sent
