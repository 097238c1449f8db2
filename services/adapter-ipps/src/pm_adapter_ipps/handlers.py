"""What pm-adapter-ipps does with each payout job it reads from `pm:psp:ipps:jobs`.

Per job (see docs/psp.md):

1. record the attempt in `pm.psp_tx_map` (phase `recorded`) before anything is sent to IPPS;
2. inquiry (no money moves; a 4xx refusal ends the job FAILED with IPPS's code) → phase `inquired`;
3. phase `confirm_sent`, committed, then confirm under our idempotency key (the job's);
4. SUCCESS or FAILED → phase `final` and a `PspResult` on `pm:psp:results`. A timeout, connection
   error, 5xx or a PENDING / UNKNOWN answer means UNKNOWN, never FAILED: the StatusPoller reads the
   status by key with backoff; still unknown after its bounded reads, an `UNKNOWN` result is published
   and the row is left in `confirm_sent` for the sweep, which publishes the final result later. When
   IPPS answered the confirm with a transfer still PENDING, that polling runs in the background and
   the job is acked at once, so that one slow transfer does not hold up the jobs read after it.

A redelivered job whose row is final republishes the same result (same message id) without calling
IPPS; one whose row is `confirm_sent` reads the status first and confirms again (same key: IPPS makes
one payment per key) only when IPPS has no transfer under it. An inquiry that cannot be answered
(IPPS down) raises, so the job is retried and, after its last delivery, dead-lettered with its row
in `recorded` / `inquired`: proof that nothing reached IPPS. The orchestrator then finishes the row
itself (FAILED, `JOB_DEAD_LETTERED`) unless it has reached `confirm_sent`; once it has, this adapter
never confirms under that key (`queries.MARK_CONFIRM_SENT`) and publishes the row's result instead.
A confirm that got no answer, after which IPPS shows no transfer under the key, raises too: the
redelivery confirms again. Should none of them take (IPPS keeps failing, the job is dead-lettered in
`confirm_sent`), the sweep concludes NOT_EXECUTED once IPPS still has no transfer after the last
inquiry expired (plus `not_executed_grace_s`): a confirm of an expired inquiry cannot take, and a new
one needs a new inquiry, which the now final row forbids. So every payout ends.

Hints (`pm:psp:ipps:hints`, IPPS callbacks the gateway verified) are never trusted: an attempt still
in `confirm_sent` gets a status read of its own, and only IPPS's answer can finish it. A hint with a
`refund_id` (a payout sent back) goes to `refunds.RefundIntake`, which asks IPPS's refund status.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pm_adapter_ipps import queries
from pm_adapter_ipps.client import IppsClient, Refused, Transfer, Unavailable
from pm_adapter_ipps.poller import FINAL, Polled, StatusPoller
from pm_adapter_ipps.refunds import RefundIntake
from pm_adapter_ipps.targets import InvalidTarget
from pm_shared import logs
from pm_shared.db import Pool
from pm_shared.errors import RetryLater
from pm_shared.messages import PspHint, PspJob, PspResult, new_message_id, now
from pm_shared.psp.adapter import service
from pm_shared.psp.adapter.results import Attempts, Publish, Row
from pm_shared.psp.attempts import result_from_row
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery
from pm_shared.streams.names import IPPS_HINTS, IPPS_JOBS

log = logging.getLogger(__name__)

PSP = "ipps"
ACTION = "payout"


class ConfirmNotTaken(RetryLater):
    """A confirm got no answer and IPPS shows no transfer under its key: retry the job to send it again."""


@dataclass
class PayoutAdapter:
    pool: Pool
    client: IppsClient
    poller: StatusPoller
    publish: Publish
    max_detached: int = 1_000
    """Transfers IPPS holds PENDING that are polled in the background at once; past it a job waits."""
    not_executed_grace_s: float = 60.0
    """How long after its last inquiry expired a confirm IPPS has no transfer for is concluded never
    executed (room for IPPS's clock and a confirm still on its way)."""
    refunds: RefundIntake | None = None
    """Where hints announcing a refund go (None: they are logged and dropped)."""
    detached: set[asyncio.Task[None]] = field(default_factory=set)

    @functools.cached_property
    def attempts(self) -> Attempts:
        return Attempts(self.pool, self.publish, PSP, ACTION)

    async def on_job(self, delivery: Delivery[PspJob]) -> None:
        job = delivery.message
        row = await self.attempts.start(job)
        if row is None:
            return
        if row["phase"] == "confirm_sent":
            polled = await self.poller.resolve(job.idempotency_key, wait_first=False)
            if not polled.absent:
                await self._settle(row, polled)
                return
            log.info("job %s: IPPS has no transfer under its key; confirming again", job.message_id)
        await self._pay(job, row)

    async def _pay(self, job: PspJob, row: Row) -> None:
        try:
            inquiry = await self.client.inquiry(job.amount, job.target)
        except InvalidTarget as exc:
            await self._finish(row, "FAILED", None, failure_code="INVALID_TARGET", polls=0, raw=None)
            log.warning("job %s refused: %s", job.message_id, exc)
            return
        except Refused as exc:  # nothing was executed: the PSP says why
            await self._finish(row, "FAILED", None, failure_code=exc.code, polls=0, raw=None)
            return
        # Unavailable propagates: the job is retried; nothing has reached IPPS beyond an inquiry.
        marked = await self.pool.fetchval(
            queries.MARK_INQUIRED, row["id"], inquiry.inquiry_id, inquiry.expires_at
        )
        if marked is None:
            await self._finished_meanwhile(row, job)
            return
        if await self.pool.fetchval(queries.MARK_CONFIRM_SENT, row["id"]) is None:
            await self._finished_meanwhile(row, job)
            return
        try:
            transfer = await self.client.confirm(inquiry.inquiry_id, job.amount, job.idempotency_key)
        except Refused as exc:
            if exc.http_status != 409:  # the PSP refused before making a transfer
                await self._finish(row, "FAILED", None, failure_code=exc.code, polls=0, raw=None)
                return
            log.warning("job %s: confirm refused %s; reading the status", job.message_id, exc)
            transfer = None
        except Unavailable as exc:
            log.warning("job %s: confirm outcome unknown (%s); polling", job.message_id, exc)
            transfer = None
        if transfer is not None and transfer.status in FINAL:
            await self._settle(row, Polled(transfer, 0, False))
            return
        if transfer is not None and len(self.detached) < self.max_detached:
            # IPPS holds the transfer and has not decided yet. Waiting for it here would hold up every
            # job behind this one (the consumer reads the next batch only when the whole batch is
            # done), so the polls go on in the background and the job is acked: should this process
            # die, the row (`confirm_sent`) is the sweep's, and a final result that never went out is
            # asked for again by the orchestrator, which re-sends the job.
            self._detach(self._resolve_detached(row, job.idempotency_key))
            return
        polled = await self.poller.resolve(job.idempotency_key)
        if polled.absent:
            # IPPS answered every read and has no transfer under our key: the confirm never took. Left
            # UNKNOWN the row would be polled for ever (the sweep cannot confirm: it has no target), so
            # the job is retried; its redelivery finds the key absent and confirms again (same key: one
            # payment at most). After its last delivery the job is dead-lettered in
            # `confirm_sent`: the orchestrator raises an alert rather than failing the intent.
            await self.pool.execute(queries.MARK_UNKNOWN, row["id"], None, None, polled.polls)
            raise ConfirmNotTaken(f"IPPS has no transfer under {job.idempotency_key!r} after its confirm")
        await self._settle(row, polled)

    def _detach(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.detached.add(task)
        task.add_done_callback(self.detached.discard)

    async def _resolve_detached(self, row: Row, key: str) -> None:
        try:
            await self._settle(row, await self.poller.resolve(key))
        except Exception as exc:  # the sweep finishes it; nothing else is waiting on this task
            logs.failure(log, exc, "polling the status of %s failed", key)

    async def aclose(self) -> None:
        """Stop the background polls; their rows stay `confirm_sent` for the next sweep."""
        for task in list(self.detached):
            task.cancel()
        await asyncio.gather(*self.detached, return_exceptions=True)

    async def _finished_meanwhile(self, row: Row, job: PspJob) -> None:
        """The row went final while this delivery worked on it: publish that result, never confirm."""
        final = await self.attempts.reload(row)
        assert final["phase"] == "final", "only a final row refuses a phase"
        log.warning(
            "job %s: attempt finished meanwhile (%s %s); not confirming",
            job.message_id,
            final["status"],
            final["failure_code"] or "",
        )
        await self.attempts.publish_final(final)

    async def _settle(self, row: Row, polled: Polled) -> None:
        """Finish the attempt when `polled` is final; otherwise publish UNKNOWN and leave it for the sweep."""
        transfer = polled.transfer
        if transfer is not None and transfer.status == "SUCCESS":
            await self._finish(
                row, "SUCCEEDED", transfer, failure_code=None, polls=polled.polls, raw="SUCCESS"
            )
        elif transfer is not None and transfer.status == "FAILED":
            code = transfer.failure_code or "PSP_FAILED"
            await self._finish(row, "FAILED", transfer, failure_code=code, polls=polled.polls, raw="FAILED")
        else:
            await self._unknown(row, transfer, polled.polls)

    async def _finish(
        self,
        row: Row,
        status: str,
        transfer: Transfer | None,
        *,
        failure_code: str | None,
        polls: int,
        raw: str | None,
    ) -> None:
        final = await self.pool.fetchrow(
            queries.MARK_FINAL,
            row["id"],
            status,
            raw,
            transfer.transfer_id if transfer else None,
            failure_code,
            transfer.trans_ref if transfer else None,
            new_message_id(),
            polls,
        )
        if final is None:  # finished meanwhile (the sweep, a hint, the fence): publish that result
            await self.attempts.publish_current(row)
            return
        result = result_from_row(final)
        log.info("intent %s: payout %s %s", result.intent_id, result.status, result.failure_code or "")
        await self.publish(result)

    async def _unknown(self, row: Row, transfer: Transfer | None, polls: int) -> None:
        await self.pool.execute(
            queries.MARK_UNKNOWN,
            row["id"],
            transfer.status if transfer else None,
            transfer.transfer_id if transfer else None,
            polls,
        )
        log.warning("intent %s: payout still unknown after %d status reads", row["intent_id"], polls)
        await self.publish(
            PspResult(
                intent_id=row["intent_id"],
                message_id=new_message_id(),
                produced_at=now(),
                psp=PSP,
                job_id=row["job_message_id"],
                status="UNKNOWN",
                psp_reference=transfer.transfer_id if transfer else None,
                detail="the PSP has not given a final answer yet; polling continues",
            )
        )

    async def on_hint(self, delivery: Delivery[PspHint]) -> None:
        """A callback said something happened: read the status ourselves, finish the attempt if final.

        The hint's claim is only logged. Whatever it names, at most one status read follows, and an
        attempt that is not in `confirm_sent` is left alone (final rows keep their result; rows before
        the confirm have nothing at IPPS to read).
        """
        hint = delivery.message
        if hint.psp != PSP:
            log.warning("hint %s is for psp %r, not %r: ignored", hint.message_id, hint.psp, PSP)
            return
        if hint.refund_id is not None:
            if self.refunds is None:
                log.warning(
                    "hint %s announces refund %s: no refund intake here", hint.message_id, hint.refund_id
                )
                return
            await self.refunds.on_hint(hint)
            return
        row = await self._hinted_row(hint)
        if row is None:
            log.info(
                "hint %s (key %r, transfer %r) names no attempt awaiting IPPS: ignored",
                hint.message_id,
                hint.idempotency_key,
                hint.psp_reference,
            )
            return
        if row["psp"] != PSP or row["phase"] != "confirm_sent":
            log.debug(
                "hint %s: attempt %s is %s, nothing to resolve", hint.message_id, row["id"], row["phase"]
            )
            return
        try:
            transfer = await self.client.status(row["idempotency_key"])
        except Unavailable as exc:  # the sweep reads it later; a hint is not worth a retry
            log.info("hint %s: status of %s unknown: %s", hint.message_id, row["idempotency_key"], exc)
            return
        if transfer is None or transfer.status not in FINAL:
            await self.pool.execute(
                queries.RECORD_POLL,
                row["id"],
                transfer.status if transfer else None,
                transfer.transfer_id if transfer else None,
            )
            log.info(
                "hint %s claimed %s for %s; IPPS says %s",
                hint.message_id,
                hint.claimed_status,
                row["idempotency_key"],
                transfer.status if transfer else "no transfer",
            )
            return
        await self._settle(row, Polled(transfer, 1, False))

    async def _hinted_row(self, hint: PspHint) -> Row | None:
        if hint.idempotency_key:
            row: Row | None = await self.pool.fetchrow(queries.SELECT_BY_KEY, hint.idempotency_key)
            if row is not None:
                return row
        if hint.psp_reference:
            found: Row | None = await self.pool.fetchrow(
                queries.SELECT_UNRESOLVED_BY_TRANSFER_ID, PSP, hint.psp_reference
            )
            return found
        return None

    async def sweep_once(self, idle_s: float, limit: int = 100) -> int:
        """Read the status of attempts still unknown and idle `idle_s`; finish those now final. Then
        try again the refunds still undecided (IPPS away, or their payout under way)."""
        if self.refunds is not None:
            await self.refunds.sweep_once(idle_s, limit)
        rows = await self.pool.fetch(queries.SELECT_UNRESOLVED, PSP, idle_s, limit)
        finished = 0
        for row in rows:
            asked_at = datetime.now(UTC)
            try:
                transfer = await self.client.status(row["idempotency_key"])
            except Unavailable as exc:
                log.info("sweep: status of %s unknown: %s", row["idempotency_key"], exc)
                continue
            if transfer is not None and transfer.status in ("SUCCESS", "FAILED"):
                await self._settle(row, Polled(transfer, 1, False))
                finished += 1
            elif transfer is None and await self._not_executed(row, asked_at):
                finished += 1
            else:
                await self.pool.execute(
                    queries.MARK_UNKNOWN,
                    row["id"],
                    transfer.status if transfer else None,
                    transfer.transfer_id if transfer else None,
                    1,
                )
        return finished

    async def _not_executed(self, row: Row, asked_at: datetime) -> bool:
        """Finish FAILED `NOT_EXECUTED` an attempt IPPS has no transfer for, read after its last
        inquiry expired: no confirm of it can take any more, and none can be sent past a final row.
        Otherwise (the inquiry still valid, or renewed meanwhile by a redelivery) nothing happens."""
        before = asked_at - timedelta(seconds=self.not_executed_grace_s)
        final = await self.pool.fetchrow(queries.FINISH_NOT_EXECUTED, row["id"], before, new_message_id())
        if final is None:
            return False
        log.warning(
            "intent %s: IPPS never executed the payout under %s (no transfer after its inquiry expired)",
            row["intent_id"],
            row["idempotency_key"],
            extra={"intent_id": row["intent_id"]},
        )
        await self.publish(result_from_row(final))
        return True


def subscriptions(adapter: PayoutAdapter) -> list[Subscription]:
    return service.subscriptions(IPPS_JOBS, IPPS_HINTS, adapter)
