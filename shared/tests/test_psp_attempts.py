"""`pm_shared.psp.attempts` against a real database: one row per idempotency key, a redelivery finds
it again (counted), a key reused for another attempt is refused, a final row's result is stable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pm_shared.db import Pool
from pm_shared.messages import Party, PspJob, new_message_id, now
from pm_shared.psp.attempts import AttemptMismatchError, record_attempt, result_from_row


def _job(key: str, amount: int = 10_000, intent_id: str | None = None) -> PspJob:
    return PspJob(
        intent_id=intent_id or str(uuid.uuid4()),
        message_id=new_message_id(),
        produced_at=now(),
        psp="ipps",
        action="payout",
        amount=amount,
        currency="THB",
        target=Party(kind="promptpay", proxy_type="MSISDN", proxy_value="0812345678"),
        idempotency_key=key,
    )


async def test_a_redelivered_job_finds_its_row_and_counts_the_attempt(db_pool: Pool) -> None:
    first = _job(f"k-{uuid.uuid4().hex}")
    row = await record_attempt(db_pool, first)
    assert (row["phase"], row["attempts"], row["job_message_id"]) == ("recorded", 1, first.message_id)
    again = await record_attempt(db_pool, first)
    assert (again["id"], again["attempts"]) == (row["id"], 2)


async def test_a_key_reused_for_another_attempt_is_refused_and_changes_nothing(db_pool: Pool) -> None:
    key = f"k-{uuid.uuid4().hex}"
    first = _job(key)
    await record_attempt(db_pool, first)
    for other in (_job(key, amount=20_000, intent_id=first.intent_id), _job(key)):
        with pytest.raises(AttemptMismatchError, match="already names another attempt"):
            await record_attempt(db_pool, other)
    stored = await db_pool.fetchrow("SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", key)
    assert stored is not None and (stored["intent_id"], stored["amount"]) == (first.intent_id, 10_000)


def test_a_final_rows_result_names_the_psps_reference_word() -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    row = {
        "intent_id": "i-1", "result_message_id": "m-1", "result_at": at, "psp": "qp",
        "job_message_id": "j-1", "status": "SUCCEEDED", "psp_transfer_id": "AD1", "failure_code": None,
        "trans_ref": "T42",
    }  # fmt: skip
    result = result_from_row(row)
    assert (result.message_id, result.produced_at, result.status, result.detail) == (
        "m-1", at, "SUCCEEDED", "transaction T42"
    )  # fmt: skip
    assert result_from_row({**row, "psp": "ipps"}).detail == "trans_ref T42"
    assert result_from_row({**row, "trans_ref": None}).detail is None
