"""What pm-adapter-qp does with each SBP top-up job (`pm:psp:qp:jobs`) and each hint (`pm:psp:qp:hints`).

Per job (see docs/psp.md):

1. record the attempt in `pm.psp_tx_map` (phase `recorded`) before anything is sent to QP; a
   currency other than RUB ends it FAILED (`UNSUPPORTED_CURRENCY`) there;
2. phase `confirm_sent`, committed, guarded on the phase before it (a row the orchestrator fenced
   `final` meanwhile is never registered: its result is published instead), then the dynamic QR is
   registered under our idempotency key as QP's `order`. A 4xx refusal ends the job FAILED with QP's
   code; a timeout, 5xx, conflict or unreadable answer leaves the outcome unknown, never FAILED: the
   OrderPoller looks the order up with backoff, and when QP still shows nothing the job raises, to be
   retried (a redelivery looks up again, then registers again under the same order: one QR per order);
3. the QR registered and not final → a `PENDING` result with its `qr.nspk.ru` link and expiry, and the
   job is acknowledged: a payer may take the QR's whole lifetime, which no stream message is held for.
   The sweep reads every QR still waiting, and a hint (a verified callback) makes the adapter read one
   at once; ACCEPTED → `SUCCEEDED`, REJECTED / EXPIRED → `FAILED` with that code, phase `final`.

A redelivered job whose row is final republishes the same result (same message id) without calling
QP; one whose QR is registered and not final republishes PENDING with the same link. A hint is never
trusted: the adapter reads the QR's status from QP itself before any final transition.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from pm_adapter_qp import queries
from pm_adapter_qp.client import OrderConflict, QpClient, Qr, Refused, Unavailable
from pm_adapter_qp.metrics import HINTS, RESULTS
from pm_adapter_qp.poller import OrderPoller
from pm_shared import logs
from pm_shared.db import Pool
from pm_shared.errors import PermanentError, RetryLater
from pm_shared.messages import PspHint, PspJob, PspResult, new_message_id, now
from pm_shared.psp import sbp_links as links
from pm_shared.psp.adapter import service
from pm_shared.psp.adapter.results import Attempts, Publish, Row
from pm_shared.psp.attempts import result_from_row
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery
from pm_shared.streams.names import QP_HINTS, QP_JOBS

log = logging.getLogger(__name__)

PSP = "qp"
ACTION = "collect"
CURRENCY = "RUB"
PURPOSE_MAX = 140
"""QP's limit on a payment purpose; a longer one is cut rather than refused."""


class RegistrationUnknown(RetryLater):
    """QP could not say whether the registration made a QR: the job is retried (transient)."""


class QrMismatch(PermanentError):
    """Under our order QP shows a QR for another amount or order, or a bad link: a person must look."""

    reason = "psp_mismatch"


def pending_result(row: Row, qr: Qr) -> PspResult:
    """QP waits for the payer: the link to show them and until when it is valid."""
    return PspResult(
        intent_id=row["intent_id"],
        message_id=new_message_id(),
        produced_at=now(),
        psp=PSP,
        job_id=row["job_message_id"],
        status="PENDING",
        psp_reference=qr.qr_id,
        detail=f"waiting for the payer (QP status {qr.status})",
        payment_link=qr.payload,
        expires_at=qr.expires_at,
    )


def check_qr(row: Row, qr: Qr) -> None:
    """Refuse to act on a QR that is not the one our row asked for (order, amount, link)."""
    try:
        link = links.parse(qr.payload)
    except links.LinkError as exc:
        raise QrMismatch(f"QR {qr.qr_id} of order {qr.order}: bad link {qr.payload!r}: {exc}") from exc
    expected = (row["idempotency_key"], row["amount"], row["amount"], qr.qr_id, CURRENCY)
    found = (qr.order, qr.amount, link.amount, link.qr_id, link.currency)
    if found != expected:
        raise QrMismatch(f"QR {qr.qr_id}: (order, amount, link sum, link id, cur) {found} != {expected}")


@dataclass
class CollectAdapter:
    pool: Pool
    client: QpClient
    poller: OrderPoller
    publish: Publish
    qr_ttl_s: int
    job_budget_s: float = 60.0
    """How long one delivery of a job may take to register its QR (a timeout, then the lookups)."""

    @functools.cached_property
    def attempts(self) -> Attempts:
        return Attempts(self.pool, self.publish, PSP, ACTION)

    # --- jobs ------------------------------------------------------------------------------------

    async def on_job(self, delivery: Delivery[PspJob]) -> None:
        job = delivery.message
        row = await self.attempts.start(job)
        if row is None:
            return
        if row["phase"] != "confirm_sent":
            if job.currency != CURRENCY:
                log.warning(
                    "job %s: currency %s, QP collects %s only", job.message_id, job.currency, CURRENCY
                )
                await self._finish(row, "FAILED", None, failure_code="UNSUPPORTED_CURRENCY")
                return
            marked = await self.pool.fetchrow(queries.MARK_CONFIRM_SENT, row["id"])
            if marked is not None:
                await self._register(job, marked)
                return
            row = await self.attempts.reload(row)  # fenced final, or marked by a concurrent delivery
            if row["phase"] == "final":
                log.warning("job %s: row went final before registration; QP not called", job.message_id)
                await self.attempts.publish_final(row)
                return
        await self._resume(job, row)

    async def _resume(self, job: PspJob, row: Row) -> None:
        """A delivery that finds a registration sent already: what QP has decides; none → register again."""
        if row["psp_transfer_id"]:
            qr = await self.client.get(row["psp_transfer_id"])  # Unavailable: retried
            if qr is not None:
                await self._settle(row, qr, announce=True)
                return
        found = await self.poller.find(job.idempotency_key, wait_first=False)
        if found.qr is not None:
            await self._settle(row, found.qr, polls=found.polls, announce=True)
            return
        if not found.absent:
            raise RegistrationUnknown(f"job {job.message_id}: QP did not answer whether order is registered")
        still_open = await self.pool.fetchrow(queries.TOUCH_OPEN, row["id"])
        if still_open is None:
            await self.attempts.publish_current(row)
            return
        log.info("job %s: QP has no QR for its order; registering again", job.message_id)
        await self._register(job, still_open)

    async def _register(self, job: PspJob, row: Row) -> None:
        purpose = (job.purpose or "")[:PURPOSE_MAX]
        try:
            qr: Qr | None = await self.client.register(
                job.idempotency_key, job.amount, purpose, self.qr_ttl_s
            )
        except Refused as exc:  # no QR was made: QP says why
            log.warning("job %s: registration refused: %s", job.message_id, exc)
            await self._finish(row, "FAILED", None, failure_code=exc.code)
            return
        except (Unavailable, OrderConflict) as exc:
            log.warning(
                "job %s: registration outcome unknown (%s); looking the order up", job.message_id, exc
            )
            qr = None
        polls = 0
        if qr is None:
            found = await self.poller.find(job.idempotency_key)
            if found.qr is None:
                raise RegistrationUnknown(
                    f"job {job.message_id}: no QR shown for its order after {found.polls} lookups"
                    + (" (QP has none)" if found.absent else "")
                )
            qr, polls = found.qr, found.polls
        await self._settle(row, qr, polls=polls, announce=True)

    # --- outcomes --------------------------------------------------------------------------------

    async def _settle(self, row: Row, qr: Qr, *, polls: int = 0, announce: bool) -> bool:
        """Finish the row when `qr` is final; else remember the QR and, when `announce` or the row did
        not know it yet, publish PENDING. True when the row was finished."""
        check_qr(row, qr)
        if qr.status == "ACCEPTED":
            await self._finish(row, "SUCCEEDED", qr, failure_code=None, polls=polls)
            return True
        if qr.status in ("REJECTED", "EXPIRED"):
            await self._finish(row, "FAILED", qr, failure_code=qr.status, polls=polls)
            return True
        seen = await self.pool.fetchrow(queries.MARK_SEEN, row["id"], qr.qr_id, qr.status, polls)
        if seen is None:  # finished meanwhile: that result stands
            await self.attempts.publish_current(row)
            return True
        if announce or row["psp_transfer_id"] is None:
            log.info("intent %s: QR %s %s, waiting for the payer", row["intent_id"], qr.qr_id, qr.status)
            RESULTS.labels(PSP, "PENDING", "").inc()
            await self.publish(pending_result(seen, qr))
        return False

    async def _finish(
        self, row: Row, status: str, qr: Qr | None, *, failure_code: str | None, polls: int = 0
    ) -> None:
        final = await self.pool.fetchrow(
            queries.MARK_FINAL,
            row["id"],
            status,
            qr.status if qr else None,
            qr.qr_id if qr else None,
            failure_code,
            qr.transaction_id if qr and status == "SUCCEEDED" else None,
            new_message_id(),
            polls,
        )
        if final is None:  # finished meanwhile (the sweep, a hint, a concurrent delivery, a fence)
            await self.attempts.publish_current(row)
            return
        log.info("intent %s: collect %s %s", final["intent_id"], status, failure_code or "")
        RESULTS.labels(PSP, status, failure_code or "").inc()
        await self.publish(result_from_row(final))

    async def _read(self, row: Row) -> Qr | None:
        """QP's view of the row's QR: by its id once known, else by our order. Raises Unavailable."""
        if row["psp_transfer_id"]:
            qr = await self.client.get(row["psp_transfer_id"])
            if qr is not None:
                return qr
        return await self.client.find(row["idempotency_key"])

    # --- hints -----------------------------------------------------------------------------------

    async def on_hint(self, delivery: Delivery[PspHint]) -> None:
        """A verified callback says a QR changed: read it from QP (never the claim) and act on that."""
        hint = delivery.message
        if hint.psp != PSP:
            log.warning("hint %s is for %s, not %s: ignored", hint.message_id, hint.psp, PSP)
            HINTS.labels(PSP, "wrong_psp").inc()
            return
        row = None
        if hint.idempotency_key:
            row = await self.pool.fetchrow(queries.SELECT_BY_KEY, PSP, hint.idempotency_key)
        if row is None and hint.psp_reference:
            row = await self.pool.fetchrow(queries.SELECT_BY_TRANSFER_ID, PSP, hint.psp_reference)
        if row is None:
            log.info(
                "hint %s (order %s, QR %s, claims %s) names no attempt of ours: nothing to do",
                hint.event_id,
                hint.idempotency_key,
                hint.psp_reference,
                hint.claimed_status,
            )
            HINTS.labels(PSP, "unknown_key").inc()
            return
        if row["phase"] != "confirm_sent":  # final already, or not registered yet (its job is in hand)
            HINTS.labels(PSP, "already_final" if row["phase"] == "final" else "unchanged").inc()
            return
        try:
            qr = await self._read(row)
        except Unavailable as exc:  # the sweep reads it again soon; a hint is only a hurry-up
            log.info("hint %s: QR status unknown (%s); left to the sweep", hint.event_id, exc)
            HINTS.labels(PSP, "unreadable_status").inc()
            return
        if qr is None:
            await self.pool.execute(queries.MARK_SEEN, row["id"], None, None, 1)
            HINTS.labels(PSP, "unchanged").inc()
            return
        finished = await self._settle(row, qr, polls=1, announce=False)
        if not finished and hint.claimed_status != qr.status:
            log.warning(
                "hint %s claims %s for QR %s; QP says %s",
                hint.event_id,
                hint.claimed_status,
                qr.qr_id,
                qr.status,
            )
        HINTS.labels(PSP, "finished" if finished else "pending").inc()

    # --- sweep -----------------------------------------------------------------------------------

    async def sweep_once(self, base_s: float, max_s: float, limit: int, concurrency: int) -> int:
        """Read the QRs waiting for their payer that are due; finish those QP decided (how many)."""
        rows = await self.pool.fetch(queries.SELECT_DUE, PSP, base_s, max_s, limit, self.job_budget_s)
        gate = asyncio.Semaphore(concurrency)

        async def one(row: Row) -> bool:
            async with gate:
                try:
                    qr = await self._read(row)
                except Unavailable as exc:
                    log.info("sweep: QR of %s unknown: %s", row["idempotency_key"], exc)
                    return False
                if qr is None:  # a registration whose outcome its job has not settled yet
                    await self.pool.execute(queries.MARK_SEEN, row["id"], None, None, 1)
                    return False
                return await self._settle(row, qr, polls=1, announce=False)

        outcomes = await asyncio.gather(*(one(row) for row in rows), return_exceptions=True)
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                logs.failure(log, outcome, "sweep: %s failed", row["idempotency_key"])
        return sum(1 for outcome in outcomes if outcome is True)


def subscriptions(adapter: CollectAdapter) -> list[Subscription]:
    return service.subscriptions(QP_JOBS, QP_HINTS, adapter)
