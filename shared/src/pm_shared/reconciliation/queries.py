"""SQL of reconciliation (alerts, sweeps' runs, repairs); the reports' SQL is in `reports.queries`.
Parameters are positional."""

from __future__ import annotations

INTENT_COLUMNS = """
    id, type, state, step, channel, route, amount, currency, source, target, from_name, to_name,
    comment, requires_monitoring, metadata, fees, created_at, updated_at, payment, exchange
"""

SELECT_INTENTS = f"SELECT {INTENT_COLUMNS} FROM pm.intent WHERE id = ANY($1::uuid[])"

# Terminal intents that last changed in [$1, $2), a page after the cursor ($3, $4) at a time.
SELECT_TERMINAL_PAGE = f"""
SELECT {INTENT_COLUMNS}
FROM pm.intent
WHERE state IN ('SETTLED', 'FAILED') AND updated_at >= $1 AND updated_at < $2 AND (updated_at, id) > ($3, $4)
ORDER BY updated_at, id
LIMIT $5
"""

# --- alerts -----------------------------------------------------------------------------------------

# The rows already there for these keys (kind, subject) of one period, locked for the upsert after.
LOCK_KNOWN_ALERTS = """
SELECT id, kind, subject, status, last_run
FROM pm.reconciliation_alert
WHERE period = $1 AND subject IS NOT NULL
  AND (kind, subject) IN (SELECT * FROM unnest($2::text[], $3::text[]))
ORDER BY id
FOR UPDATE
"""

# A check running beside another (two replicas, the continuous check and a sweep) may open the same
# alert at the same moment: the second finds it there (no row returned) and counts it as seen again.
INSERT_ALERT = """
INSERT INTO pm.reconciliation_alert (kind, subject, period, intent_id, detail, last_run)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (kind, subject, period) WHERE subject IS NOT NULL DO NOTHING
RETURNING id
"""

SELECT_ALERT_ID = """
SELECT id, status FROM pm.reconciliation_alert WHERE kind = $1 AND subject = $2 AND period = $3 FOR UPDATE
"""

# Seen again: a resolved alert reopens; the count grows once per run that sees it.
SEEN_AGAIN = """
UPDATE pm.reconciliation_alert
SET detail = $2::jsonb,
    last_seen_at = now(),
    occurrences = occurrences + CASE WHEN last_run IS DISTINCT FROM $3 THEN 1 ELSE 0 END,
    last_run = $3,
    status = CASE WHEN status = 'RESOLVED' THEN 'OPEN' ELSE status END,
    resolved_at = NULL,
    resolved_by = NULL
WHERE id = $1
"""

# Alerts of a check that passed: those of kinds $2 in period $1 (about subjects $3 when given) that were
# not found again ($4: "kind subject" keys found in this run).
RESOLVE_PASSED = """
UPDATE pm.reconciliation_alert
SET status = 'RESOLVED', resolved_at = now(), resolved_by = 'reconciler'
WHERE status <> 'RESOLVED' AND period = $1 AND kind = ANY($2::text[])
  AND ($3::text[] IS NULL OR subject = ANY($3::text[]))
  AND kind || ' ' || subject <> ALL($4::text[])
RETURNING id
"""

INSERT_ACTIONS = """
INSERT INTO pm.reconciliation_alert_action (alert_id, action, actor, note, detail)
SELECT id, $2, $3, $4, $5::jsonb FROM unnest($1::bigint[]) AS id
"""

_ALERT_COLUMNS = """
id, kind, subject, period, intent_id, status, occurrences, detail, created_at, last_seen_at,
acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, stream, entry_id
"""

# Newest first, a page before cursor $3 (0: from the newest); $1: statuses wanted, $2: kind or NULL.
SELECT_ALERTS = f"""
SELECT {_ALERT_COLUMNS}
FROM pm.reconciliation_alert
WHERE status = ANY($1::text[]) AND ($2::text IS NULL OR kind = $2) AND ($3::bigint = 0 OR id < $3::bigint)
ORDER BY id DESC
LIMIT $4
"""

SELECT_ALERT = f"SELECT {_ALERT_COLUMNS} FROM pm.reconciliation_alert WHERE id = $1"

SELECT_ALERT_ACTIONS = """
SELECT action, actor, note, detail, at FROM pm.reconciliation_alert_action WHERE alert_id = $1 ORDER BY id
"""

ACKNOWLEDGE = f"""
UPDATE pm.reconciliation_alert
SET status = 'ACKNOWLEDGED', acknowledged_at = now(), acknowledged_by = $2, note = coalesce($3, note)
WHERE id = $1 AND status = 'OPEN'
RETURNING {_ALERT_COLUMNS}
"""

RESOLVE = f"""
UPDATE pm.reconciliation_alert
SET status = 'RESOLVED', resolved_at = now(), resolved_by = $2, note = coalesce($3, note)
WHERE id = $1 AND status <> 'RESOLVED'
RETURNING {_ALERT_COLUMNS}
"""

COUNT_UNRESOLVED_BY_KIND = """
SELECT kind, count(*) AS n FROM pm.reconciliation_alert WHERE status <> 'RESOLVED' GROUP BY kind
"""

# --- sweeps -----------------------------------------------------------------------------------------

# Take the sweep of a period: a new one, or one whose holder's lease ran out (it resumes from the
# checkpoint). A DONE sweep, or one another replica holds, is not taken (no row returned).
CLAIM_RUN = """
INSERT INTO pm.reconciliation_run AS r (sweep, period, owner, lease_until)
VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
ON CONFLICT (sweep, period) DO UPDATE
SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, attempts = r.attempts + 1
WHERE r.status = 'RUNNING' AND (r.lease_until < now() OR r.owner = EXCLUDED.owner)
RETURNING id, checkpoint, stats, attempts
"""

# A page's checkpoint, written with the page's alerts; no row: the lease was lost (another replica
# holds the sweep now) and the transaction must roll back.
CHECKPOINT_RUN = """
UPDATE pm.reconciliation_run
SET checkpoint = $3::jsonb, stats = $4::jsonb, lease_until = now() + $5 * interval '1 millisecond'
WHERE id = $1 AND owner = $2 AND status = 'RUNNING'
RETURNING id
"""

FINISH_RUN = """
UPDATE pm.reconciliation_run
SET status = 'DONE', finished_at = now(), stats = $3::jsonb
WHERE id = $1 AND owner = $2 AND status = 'RUNNING'
RETURNING id
"""

SELECT_RUNS = """
SELECT id, sweep, period, status, owner, attempts, checkpoint, stats, started_at, finished_at, lease_until
FROM pm.reconciliation_run
WHERE ($1::text IS NULL OR sweep = $1)
ORDER BY id DESC
LIMIT $2
"""

# --- repairs ----------------------------------------------------------------------------------------

PROPOSE_REPAIR = """
INSERT INTO pm.reconciliation_repair (alert_id, intent_id, transfers)
VALUES ($1, $2, $3::jsonb)
ON CONFLICT (alert_id) DO UPDATE SET transfers = EXCLUDED.transfers
WHERE pm.reconciliation_repair.status = 'PROPOSED'
RETURNING id, status, transfers
"""

SELECT_REPAIR = """
SELECT id, alert_id, intent_id, transfers, status, proposed_at, applied_by, applied_at
FROM pm.reconciliation_repair WHERE alert_id = $1
"""

BEGIN_APPLY = """
UPDATE pm.reconciliation_repair SET status = 'APPLYING', applied_by = $2
WHERE alert_id = $1 AND status IN ('PROPOSED', 'APPLYING')
RETURNING id, transfers
"""

FINISH_APPLY = """
UPDATE pm.reconciliation_repair SET status = 'APPLIED', applied_at = now()
WHERE alert_id = $1 AND status = 'APPLYING'
RETURNING id
"""

# Intents with an unresolved per-intent alert (to be checked again), the longest unseen first, at most
# a lookup's worth at a time.
SELECT_ALERTED_INTENTS = """
SELECT intent_id FROM pm.reconciliation_alert
WHERE status <> 'RESOLVED' AND period = 'continuous' AND kind = ANY($1::text[]) AND intent_id IS NOT NULL
GROUP BY intent_id
ORDER BY min(last_seen_at)
LIMIT 2000
"""

# Which of these transfer ids (text) are correcting transfers of a repair.
SELECT_REPAIR_TRANSFER_IDS = """
SELECT t->>'id' AS id
FROM pm.reconciliation_repair AS r, jsonb_array_elements(r.transfers) AS t
WHERE r.status IN ('APPLYING', 'APPLIED') AND t->>'id' = ANY($1::text[])
"""

# Unresolved alerts of one kind (to be checked again), oldest first.
SELECT_UNRESOLVED_OF_KIND = """
SELECT id, subject, period FROM pm.reconciliation_alert
WHERE status <> 'RESOLVED' AND kind = $1 AND subject IS NOT NULL
ORDER BY id
LIMIT $2
"""

# --- projection -------------------------------------------------------------------------------------

# pm.account_balance, a page after account id $1 at a time; `closings`: how often a merchant's accounts
# were closed (their closings moved money the projection does not count).
SELECT_PROJECTION_PAGE = """
SELECT b.account_id, b.owner_kind, b.owner_id, b.currency, b.code, b.debits_posted, b.credits_posted,
       coalesce(m.closings, 0) AS closings
FROM pm.account_balance AS b
LEFT JOIN pm.merchant AS m ON b.owner_kind = 'merchant' AND m.merchant_id = b.owner_id
WHERE b.account_id > $1
ORDER BY b.account_id
LIMIT $2
"""

SELECT_PROJECTION_OF = """
SELECT account_id, debits_posted, credits_posted FROM pm.account_balance WHERE account_id = ANY($1::uuid[])
"""

# Runs whose holder's lease ran out before they were done (to be resumed).
SELECT_STALE_RUNS = """
SELECT sweep, period FROM pm.reconciliation_run WHERE status = 'RUNNING' AND lease_until < now() ORDER BY id
"""

# --- PSP settlement ---------------------------------------------------------------------------------

# Our payments a PSP finished with success on [$2, $3), whose intents SETTLED: each must be in its report.
SELECT_PSP_SETTLED = """
SELECT m.idempotency_key, m.intent_id, m.amount, m.currency, m.psp_transfer_id
FROM pm.psp_tx_map AS m
JOIN pm.intent AS i ON i.id::text = m.intent_id
WHERE m.psp = $1 AND m.phase = 'final' AND m.status = 'SUCCEEDED' AND m.result_at >= $2 AND m.result_at < $3
  AND i.state = 'SETTLED'
"""

# What PM knows of these references of one PSP (any day).
SELECT_PSP_KNOWN = """
SELECT idempotency_key, intent_id, amount, currency, status
FROM pm.psp_tx_map WHERE psp = $1 AND idempotency_key = ANY($2::text[])
"""

# The newest finished settlement run of each day in [$1, $2] (days as YYYY-MM-DD): its stats.
SELECT_SETTLEMENT_STATS = """
SELECT DISTINCT ON (left(period, 10)) left(period, 10) AS day, stats
FROM pm.reconciliation_run
WHERE sweep = 'settlement' AND status = 'DONE' AND left(period, 10) BETWEEN $1 AND $2
ORDER BY left(period, 10), finished_at DESC
"""

SELECT_RUN = """
SELECT id, sweep, period, status, owner, attempts, checkpoint, stats, started_at, finished_at, lease_until
FROM pm.reconciliation_run WHERE sweep = $1 AND period = $2
"""
