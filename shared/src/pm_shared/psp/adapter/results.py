"""What both adapters do with their row of an attempt (`pm.psp_tx_map`) around a job and its result.

A job is recorded before anything is sent to the PSP; a job meant for another adapter is refused
(dead-lettered, `wrong_job`); a redelivered job whose row is final publishes that row's result
again. The result of a final row is always the same message (same id, same time, see
`pm_shared.psp.attempts.result_from_row`), whoever publishes it: consumers deduplicate on the id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from pm_shared.db import Pool
from pm_shared.errors import PermanentError
from pm_shared.messages import PspJob, PspResult, new_message_id
from pm_shared.psp.adapter import queries
from pm_shared.psp.attempts import record_attempt, result_from_row
from pm_shared.streams import Publisher
from pm_shared.streams.names import PSP_RESULTS

log = logging.getLogger(__name__)

Row = asyncpg.Record
Publish = Callable[[PspResult], Awaitable[object]]
"""Sends a result to the orchestrator (`pm:psp:results`)."""


class WrongJob(PermanentError):
    """A job for another PSP or action: this adapter must never act on it."""

    reason = "wrong_job"


def publisher_of(publisher: Publisher) -> Publish:
    """`Publish` through `publisher`."""

    async def publish(result: PspResult) -> object:
        return await publisher.publish(PSP_RESULTS, result)

    return publish


@dataclass(frozen=True)
class Attempts:
    """One adapter's attempts: its PSP and action, the pool its rows are in, where results go."""

    pool: Pool
    publish: Publish
    psp: str
    action: str

    async def start(self, job: PspJob) -> Row | None:
        """The job's row, recorded before anything is sent to the PSP; None when the row is final
        already (a redelivery: its result is published again, the PSP is not called)."""
        if job.psp != self.psp or job.action != self.action:
            raise WrongJob(f"job {job.message_id} is {job.psp}/{job.action}, not {self.psp}/{self.action}")
        row: Row = await record_attempt(self.pool, job)
        if row["phase"] != "final":
            return row
        log.info("job %s already final (%s): republishing its result", job.message_id, row["status"])
        await self.publish_final(row)
        return None

    async def reload(self, row: Row) -> Row:
        """The row as it is now."""
        fresh: Row | None = await self.pool.fetchrow(queries.SELECT_BY_ID, row["id"])
        assert fresh is not None, "attempts are never deleted"
        return fresh

    async def publish_final(self, row: Row) -> None:
        """Publish the result of the final `row`, giving it a result id and time first if it has none."""
        if row["result_message_id"] is None or row["result_at"] is None:
            stamped: Row | None = await self.pool.fetchrow(queries.STAMP_RESULT, row["id"], new_message_id())
            assert stamped is not None, "only a final row is published as final"
            row = stamped
        await self.publish(result_from_row(row))

    async def publish_current(self, row: Row) -> None:
        """The row went final meanwhile (finished by someone else): publish that result."""
        await self.publish_final(await self.reload(row))
