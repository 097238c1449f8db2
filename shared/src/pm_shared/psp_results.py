"""The final `PspResult` a finished `pm.psp_tx_map` row stands for (migration 0009).

Built from the row alone, so every publisher of it — the adapter that finished the attempt, a
redelivery of its job, the orchestrator's review of a dead-lettered job — sends the identical
message (same id, same time, same words); consumers deduplicate on the id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pm_shared.messages import PspResult

# How each PSP names the reference of the money movement it made (psp-protocols §2, §3).
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
