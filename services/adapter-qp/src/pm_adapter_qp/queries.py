"""The adapter's SQL: one `pm.psp_tx_map` row per top-up (migration 0009), moved phase by phase.

A collect has no inquiry: `recorded` → `confirm_sent` (the registration may have made a QR a payer
can pay) → `final`. `psp_transfer_id` is the QR's id, `psp_status` QP's last status word,
`trans_ref` the SBP transaction id of an accepted payment. The SQL both adapters run around a result
is in `pm_shared.psp.adapter.queries`.
"""

from __future__ import annotations

# Committed before the registration leaves: from here on a payer may pay. Guarded on the phases
# before it, so a row the orchestrator fenced `final` meanwhile (a dead-lettered job failed) is never
# registered: no row back means do not call QP.
MARK_CONFIRM_SENT = """
UPDATE pm.psp_tx_map
SET phase = 'confirm_sent', confirm_sent_at = coalesce(confirm_sent_at, now()), updated_at = now()
WHERE id = $1 AND phase IN ('recorded', 'inquired')
RETURNING *
"""

# Before registering again an order QP has no QR for (a redelivery): the row must still be open.
TOUCH_OPEN = """
UPDATE pm.psp_tx_map SET updated_at = now()
WHERE id = $1 AND phase = 'confirm_sent'
RETURNING *
"""

# QP showed the QR, not final yet (NEW, IN_PROGRESS): remember its id and QP's status word. Also a
# sweep's read of a QR still unpaid (or of an order QP has no QR for: $2 and $3 NULL), which pushes
# the row's next read back (see SELECT_DUE).
MARK_SEEN = """
UPDATE pm.psp_tx_map
SET psp_transfer_id = coalesce($2, psp_transfer_id), psp_status = coalesce($3, psp_status),
    polls = polls + $4, updated_at = now()
WHERE id = $1 AND phase = 'confirm_sent'
RETURNING *
"""

# The final answer. Guarded: a row already final keeps its first result (a terminal state never moves).
MARK_FINAL = """
UPDATE pm.psp_tx_map
SET phase = 'final', status = $2, psp_status = coalesce($3, psp_status),
    psp_transfer_id = coalesce($4, psp_transfer_id), failure_code = $5, trans_ref = $6,
    result_message_id = $7, result_at = now(), polls = polls + $8, updated_at = now()
WHERE id = $1 AND phase <> 'final'
RETURNING *
"""

SELECT_BY_KEY = "SELECT * FROM pm.psp_tx_map WHERE psp = $1 AND idempotency_key = $2"

SELECT_BY_TRANSFER_ID = """
SELECT * FROM pm.psp_tx_map WHERE psp = $1 AND psp_transfer_id = $2 ORDER BY id DESC LIMIT 1
"""

# QRs waiting for their payer, due for a read: one untouched for `$2` seconds, doubled per read made
# (polls), up to `$3` seconds; oldest first. A row with no QR id yet is its job's while the job may
# still be registering (`$5` seconds): after that its job was retried away or dead-lettered, and the
# sweep looks the order up. The partial index psp_tx_map_unresolved_idx serves it.
SELECT_DUE = """
SELECT * FROM pm.psp_tx_map
WHERE psp = $1 AND phase = 'confirm_sent'
  AND updated_at < now() - make_interval(secs => least($3::float8, $2::float8 * power(2, least(polls, 30))))
  AND (psp_transfer_id IS NOT NULL OR updated_at < now() - make_interval(secs => $5::float8))
ORDER BY updated_at
LIMIT $4
"""
