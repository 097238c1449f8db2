"""The adapter's SQL: one `pm.psp_tx_map` row per attempt, moved phase by phase (migration 0009), and
one `pm.psp_refund` row per refund IPPS notifies (migration 0020, `pm_adapter_ipps.refunds`).

The SQL both adapters run around a result is in `pm_shared.psp.adapter.queries`.
"""

from __future__ import annotations

# Never moves a phase back: a confirm sent earlier (found absent at IPPS) keeps `confirm_sent`, and a
# final row (finished meanwhile, or fenced by the orchestrator for a dead-lettered job) is not touched:
# no row comes back, and the caller publishes that final result instead of going on.
MARK_INQUIRED = """
UPDATE pm.psp_tx_map
SET phase = CASE WHEN phase = 'recorded' THEN 'inquired' ELSE phase END,
    psp_inquiry_id = $2, inquiry_expires_at = $3, updated_at = now()
WHERE id = $1 AND phase <> 'final'
RETURNING id
"""

# Written (and committed) before the confirm request leaves: from here on the PSP may have paid.
# The fence (see docs/psp.md): the orchestrator, handling a dead-lettered job, finishes the row itself
# (`final`, FAILED, JOB_DEAD_LETTERED) with `... WHERE phase IN ('recorded', 'inquired')`. Row locks
# make the two updates take turns, so exactly one wins: when this one updates nothing the confirm
# must not be sent (the intent may already be failed and its money released). `confirm_sent` itself
# matches: a redelivered job confirms again when IPPS has no transfer under the key.
MARK_CONFIRM_SENT = """
UPDATE pm.psp_tx_map
SET phase = 'confirm_sent', confirm_sent_at = coalesce(confirm_sent_at, now()), updated_at = now()
WHERE id = $1 AND phase IN ('recorded', 'inquired', 'confirm_sent')
RETURNING id
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

# A status read that found no final answer (a hint's): remembered, but `updated_at` is left alone so
# that hints, which anyone able to reach the gateway may cause, cannot keep postponing the sweep.
RECORD_POLL = """
UPDATE pm.psp_tx_map
SET psp_status = coalesce($2, psp_status), psp_transfer_id = coalesce($3, psp_transfer_id),
    polls = polls + 1
WHERE id = $1 AND phase = 'confirm_sent'
"""

SELECT_BY_KEY = "SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1"

# A hint that names only IPPS's transfer id. Only unresolved attempts can use it, and they are few:
# the partial index on (psp, updated_at) WHERE phase = 'confirm_sent' bounds the scan.
SELECT_UNRESOLVED_BY_TRANSFER_ID = """
SELECT * FROM pm.psp_tx_map
WHERE psp = $1 AND phase = 'confirm_sent' AND psp_transfer_id = $2
"""

# Attempts whose outcome is still unknown and that nobody touched for a while: the sweep's work.
SELECT_UNRESOLVED = """
SELECT * FROM pm.psp_tx_map
WHERE psp = $1 AND phase = 'confirm_sent' AND updated_at < now() - make_interval(secs => $2)
ORDER BY updated_at
LIMIT $3
"""

# A confirm that never took (every intent ends, docs/invariants.md): IPPS has no transfer under the key, read
# after the row's last inquiry expired ($2: that read's start minus a grace for IPPS's clock and a
# confirm still in flight). A guarded final FAILED: a redelivery inquiring again meanwhile moved the
# expiry on (and then this matches nothing); after it, no confirm can be sent past the final row.
FINISH_NOT_EXECUTED = """
UPDATE pm.psp_tx_map
SET phase = 'final', status = 'FAILED', failure_code = 'NOT_EXECUTED', psp_status = NULL,
    result_message_id = coalesce(result_message_id, $3), result_at = now(), updated_at = now()
WHERE id = $1 AND phase = 'confirm_sent' AND inquiry_expires_at < $2
RETURNING *
"""

# -- refunds (pm.psp_refund) ------------------------------------------------------------------------

# A notification: the row is made RECEIVED, or counted once more. `updated_at` is left alone on a repeat
# (it is when the refund was last worked on, which the sweep goes by), so notifications cannot
# postpone a retry. Returns the row's status: only a RECEIVED refund is worked on.
NOTICE_REFUND = """
INSERT INTO pm.psp_refund AS r (psp, refund_id, psp_reference) VALUES ($1, $2, $3)
ON CONFLICT (psp, refund_id) DO UPDATE
SET notifications = r.notifications + 1, psp_reference = coalesce(r.psp_reference, EXCLUDED.psp_reference)
RETURNING status
"""

# Held until the refund's transaction ends: two adapters (or a hint and the sweep) on one refund take
# turns, and the second finds it no longer RECEIVED.
LOCK_REFUND = "SELECT status FROM pm.psp_refund WHERE psp = $1 AND refund_id = $2 FOR UPDATE"

# The refund's outcome, once (a row already decided keeps its first).
FINISH_REFUND = """
UPDATE pm.psp_refund
SET status = $3, psp_reference = coalesce($4, psp_reference), amount = $5, currency = $6,
    original_intent_id = $7, refund_intent_id = $8, detail = $9, updated_at = now()
WHERE psp = $1 AND refund_id = $2 AND status = 'RECEIVED'
RETURNING status
"""

# Worked on without an outcome (IPPS away, or the payout not final yet): the sweep tries again later.
TOUCH_REFUND = """
UPDATE pm.psp_refund SET detail = $3, updated_at = now()
WHERE psp = $1 AND refund_id = $2 AND status = 'RECEIVED'
"""

# Refunds still undecided and left alone for a while: the sweep's work. Refunds are rare; a RECEIVED
# one is decided at the first read IPPS answers, so the rows this filters are few.
SELECT_UNDECIDED_REFUNDS = """
SELECT refund_id FROM pm.psp_refund
WHERE psp = $1 AND status = 'RECEIVED' AND updated_at < now() - make_interval(secs => $2)
ORDER BY updated_at
LIMIT $3
"""

SELECT_PAYOUT_BY_KEY = """
SELECT intent_id, psp_transfer_id, status FROM pm.psp_tx_map WHERE psp = $1 AND idempotency_key = $2
"""

SELECT_INTENT = "SELECT id, type, state, amount, currency, source, target FROM pm.intent WHERE id = $1"
