"""SQL of `pm.psp_tx_map` every PSP adapter shares (migration 0009). Parameters are positional."""

from __future__ import annotations

# A delivery of a job: the row is created in phase `recorded` before anything is sent to the PSP, or,
# for a redelivery, found again (its attempts counted). The job's fields never change a row.
RECORD_ATTEMPT = """
INSERT INTO pm.psp_tx_map AS m (intent_id, psp, action, idempotency_key, job_message_id, amount, currency)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (idempotency_key) DO UPDATE SET attempts = m.attempts + 1, updated_at = now()
RETURNING *
"""
