"""The SQL on `pm.psp_tx_map` (migration 0009) both adapters run around a job's result, by name."""

from __future__ import annotations

SELECT_BY_ID = "SELECT * FROM pm.psp_tx_map WHERE id = $1"

# A final row someone else wrote without a result (the orchestrator's fence may): it gets one now, so
# that every later delivery of the job republishes the same result (same message id and time).
STAMP_RESULT = """
UPDATE pm.psp_tx_map
SET result_message_id = coalesce(result_message_id, $2), result_at = coalesce(result_at, now())
WHERE id = $1 AND phase = 'final'
RETURNING *
"""
