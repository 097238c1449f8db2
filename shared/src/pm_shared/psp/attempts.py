"""What every PSP adapter does with `pm.psp_tx_map` (migration 0009), one row per attempt.

`record_attempt` writes (or finds again) a job's row before anything is sent to the PSP.
`result_from_row` is the final `PspResult` a finished row stands for, built from the row alone, so
every publisher of it — the adapter that finished the attempt, a redelivery of its job, the
orchestrator's review of a dead-lettered job — sends the identical message (same id, same time,
same words); consumers deduplicate on the id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pm_shared.db import Pool
from pm_shared.errors import PermanentError
from pm_shared.messages import PspJob, PspResult
from pm_shared.psp import queries

# How each PSP names the reference of the money movement it made (docs/psp.md).
_REFERENCE_WORD = {"ipps": "trans_ref", "qp": "transaction"}


class Row(Protocol):
    """A `pm.psp_tx_map` row (an asyncpg Record, or a dict in tests)."""

    def __getitem__(self, key: str, /) -> Any: ...


def result_from_row(row: Row) -> PspResult:
    """The result of a `final` row (phase final: status SUCCEEDED or FAILED, result id and time set)."""
    produced_at: datetime = row["result_at"]
    reference = row["trans_ref"]
    word = _REFERENCE_WORD.get(row["psp"], "reference")
    return PspResult(
        intent_id=row["intent_id"],
        message_id=row["result_message_id"],
        produced_at=produced_at,
        psp=row["psp"],
        job_id=row["job_message_id"],
        status=row["status"],
        psp_reference=row["psp_transfer_id"],
        failure_code=row["failure_code"],
        detail=f"{word} {reference}" if reference else None,
    )


class AttemptMismatchError(PermanentError):
    """The job's idempotency key already names another attempt: no retry can make them agree."""

    reason = "psp_key_reused"


async def record_attempt(pool: Pool, job: PspJob) -> Any:
    """The job's row, `recorded` before any call to the PSP (a redelivery finds it, counted)."""
    row = await pool.fetchrow(
        queries.RECORD_ATTEMPT,
        job.intent_id,
        job.psp,
        job.action,
        job.idempotency_key,
        job.message_id,
        job.amount,
        job.currency,
    )
    assert row is not None
    if (row["intent_id"], row["psp"], row["action"], row["amount"]) != (
        job.intent_id,
        job.psp,
        job.action,
        job.amount,
    ):
        raise AttemptMismatchError(f"idempotency key {job.idempotency_key!r} already names another attempt")
    return row
