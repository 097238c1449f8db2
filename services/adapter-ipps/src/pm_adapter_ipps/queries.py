"""The adapter's SQL: one `pm.psp_tx_map` row per attempt, moved phase by phase (migration 0009)."""

from __future__ import annotations

# A delivery of a job: the row is created in phase `recorded` before anything is sent to the PSP, or,
# for a redelivery, found again (its attempts counted). The job's fields never change a row.
RECORD_ATTEMPT = """
INSERT INTO pm.psp_tx_map AS m (intent_id, psp, action, idempotency_key, job_message_id, amount, currency)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (idempotency_key) DO UPDATE SET attempts = m.attempts + 1, updated_at = now()
RETURNING *
"""

# Never moves a phase back: a confirm sent earlier (found absent at IPPS) keeps `confirm_sent`.
MARK_INQUIRED = """
UPDATE pm.psp_tx_map
SET phase = CASE WHEN phase = 'recorded' THEN 'inquired' ELSE phase END,
    psp_inquiry_id = $2, updated_at = now()
WHERE id = $1 AND phase <> 'final'
"""

# Written (and committed) before the confirm request leaves: from here on the PSP may have paid.
MARK_CONFIRM_SENT = """
UPDATE pm.psp_tx_map
SET phase = 'confirm_sent', confirm_sent_at = coalesce(confirm_sent_at, now()), updated_at = now()
WHERE id = $1 AND phase <> 'final'
"""

# Still unknown after polling: remembered, the row stays in `confirm_sent` for the sweep.
MARK_UNKNOWN = """
UPDATE pm.psp_tx_map
SET status = 'UNKNOWN', psp_status = coalesce($2, psp_status),
    psp_transfer_id = coalesce($3, psp_transfer_id), polls = polls + $4, updated_at = now()
WHERE id = $1 AND phase <> 'final'
"""

# The final answer. Guarded: a row already final keeps its first result (a terminal state never moves).
MARK_FINAL = """
UPDATE pm.psp_tx_map
SET phase = 'final', status = $2, psp_status = $3, psp_transfer_id = coalesce($4, psp_transfer_id),
    failure_code = $5, trans_ref = $6, result_message_id = $7, result_at = now(), polls = polls + $8,
    updated_at = now()
WHERE id = $1 AND phase <> 'final'
RETURNING *
"""

SELECT_BY_ID = "SELECT * FROM pm.psp_tx_map WHERE id = $1"

# Attempts whose outcome is still unknown and that nobody touched for a while: the sweep's work.
SELECT_UNRESOLVED = """
SELECT * FROM pm.psp_tx_map
WHERE psp = $1 AND phase = 'confirm_sent' AND updated_at < now() - make_interval(secs => $2)
ORDER BY updated_at
LIMIT $3
"""
