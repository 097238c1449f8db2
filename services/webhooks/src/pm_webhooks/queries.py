"""Every SQL statement pm-webhooks runs, by name."""

from __future__ import annotations

# -- fan-out -------------------------------------------------------------------------------------

# The intents of a batch of state changes, with what the payload shows and what finds the merchant.
SELECT_INTENTS = """
SELECT id, type, state, amount, currency, source, target, fees, failure_code, miniapp_id,
       original_intent_id, created_at, updated_at, idempotency_key
FROM pm.intent WHERE id = ANY($1::uuid[])
"""

# The payment request a charge was made by: the Idempotency-Key names it, the request names the charge
# back (so a charge submitted by hand under such a key is not taken for one).
SELECT_PAYMENT_REQUESTS = """
SELECT id, intent_id FROM pm.payment_request
WHERE id = ANY($1::uuid[]) AND intent_id = ANY($2::uuid[])
"""

SELECT_ENABLED_ENDPOINTS = """
SELECT endpoint_id, merchant_id, event_types FROM pm.webhook_endpoint
WHERE merchant_id = ANY($1::text[]) AND status = 'ENABLED'
"""

# One row per (endpoint, event); a redelivered state change inserts nothing.
INSERT_DELIVERIES = """
INSERT INTO pm.webhook_delivery (webhook_id, endpoint_id, merchant_id, event_type, intent_id, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::bytea[])
ON CONFLICT (endpoint_id, webhook_id) DO NOTHING
RETURNING event_type
"""

# -- dispatch ------------------------------------------------------------------------------------

# Claim due deliveries for one round of attempts. $1: how many at most; $2: endpoints this replica
# takes none of now (its attempts to them are at the limit, or their breaker is open); $3/$4: the
# endpoints with attempts in flight here and how many; $5: the per-endpoint limit; $6: the claim's
# length in seconds. The candidates are locked (SKIP LOCKED: another replica's candidates are left to
# it), then at most the free slots of each endpoint are claimed; the others stay due.
CLAIM_DUE = """
WITH candidate AS (
    SELECT id, endpoint_id, next_attempt_at FROM pm.webhook_delivery
    WHERE status = 'PENDING' AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
      AND NOT (endpoint_id = ANY($2::text[]))
    ORDER BY next_attempt_at
    LIMIT $1 * 2
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT c.id, c.next_attempt_at,
           row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.id) AS n,
           coalesce(b.in_flight, 0) AS in_flight
    FROM candidate c
    LEFT JOIN unnest($3::text[], $4::int[]) AS b (endpoint_id, in_flight) USING (endpoint_id)
), chosen AS (
    SELECT id FROM ranked WHERE n + in_flight <= $5 ORDER BY next_attempt_at LIMIT $1
)
UPDATE pm.webhook_delivery d
SET claimed_until = now() + make_interval(secs => $6), updated_at = now()
FROM chosen, pm.webhook_endpoint e
WHERE d.id = chosen.id AND e.endpoint_id = d.endpoint_id
RETURNING d.id, d.webhook_id, d.endpoint_id, d.payload, d.attempts, d.replay_by, d.claimed_until,
          e.url, e.status AS endpoint_status, e.secret_encrypted, e.previous_secret_encrypted,
          e.previous_until > now() AS previous_in_force
"""

# Put an endpoint's due deliveries off until its breaker closes; an attempt in flight keeps its claim.
POSTPONE_ENDPOINT = """
UPDATE pm.webhook_delivery
SET next_attempt_at = $2, updated_at = now()
WHERE endpoint_id = $1 AND status = 'PENDING' AND next_attempt_at < $2
  AND (claimed_until IS NULL OR claimed_until < now())
"""

# Give a claimed delivery back without an attempt (its endpoint's breaker is open).
RELEASE = """
UPDATE pm.webhook_delivery SET claimed_until = NULL, next_attempt_at = $3, updated_at = now()
WHERE id = $1 AND claimed_until = $2 AND status = 'PENDING'
"""

# -- an attempt's record (one transaction) -------------------------------------------------------

# An attempt's record in one statement: the delivery's new state, only while this sender still holds the
# claim the attempt was made under ($2), and the attempt's row; after a success ($3 = 'DELIVERED') the
# endpoint's `failing_since` is cleared. Returns the attempt's number (none: the claim had lapsed).
RECORD_ATTEMPT = """
WITH delivery AS (
    UPDATE pm.webhook_delivery
    SET attempts = attempts + 1, status = $3, next_attempt_at = coalesce($4, next_attempt_at),
        last_status_code = $5, last_error = $6,
        delivered_at = CASE WHEN $3 = 'DELIVERED' THEN now() ELSE delivered_at END,
        claimed_until = NULL, replay_by = NULL, updated_at = now()
    WHERE id = $1 AND claimed_until = $2 AND status = 'PENDING'
    RETURNING id, endpoint_id, attempts
), attempt AS (
    INSERT INTO pm.webhook_attempt (delivery_id, attempt, trigger, at, status_code, error, latency_ms,
                                    response_excerpt, actor)
    SELECT id, attempts, $7, $8, $5, $6, $9, $10, $11 FROM delivery
), endpoint AS (
    UPDATE pm.webhook_endpoint e SET failing_since = NULL, updated_at = now()
    FROM delivery
    WHERE $3 = 'DELIVERED' AND e.endpoint_id = delivery.endpoint_id AND e.failing_since IS NOT NULL
)
SELECT attempts FROM delivery
"""

# The endpoint failed: since when it has been failing (this failure, when it was not failing before).
ENDPOINT_FAILED = """
UPDATE pm.webhook_endpoint SET failing_since = coalesce(failing_since, now()), updated_at = now()
WHERE endpoint_id = $1
RETURNING failing_since
"""

# Disable an ENABLED endpoint ($2: why); the row comes back only when this statement disabled it.
DISABLE_ENDPOINT = """
UPDATE pm.webhook_endpoint SET status = 'DISABLED', disabled_reason = $2, updated_at = now()
WHERE endpoint_id = $1 AND status = 'ENABLED'
RETURNING endpoint_id
"""

LOG_ENDPOINT_EVENT = """
INSERT INTO pm.webhook_event_log (endpoint_id, delivery_id, action, actor, detail)
VALUES ($1, $2, $3, $4, $5)
"""

# A disabled endpoint's deliveries still waiting are failed (a claimed one is failed when its attempt
# is recorded, or when it is claimed next).
FAIL_PENDING_OF_ENDPOINT = """
UPDATE pm.webhook_delivery
SET status = 'FAILED', last_error = $2, claimed_until = NULL, replay_by = NULL, updated_at = now()
WHERE endpoint_id = $1 AND status = 'PENDING' AND (claimed_until IS NULL OR claimed_until < now())
"""

# A delivery claimed for an endpoint that is disabled: failed without an attempt.
FAIL_DELIVERY = """
UPDATE pm.webhook_delivery
SET status = 'FAILED', last_error = $3, claimed_until = NULL, replay_by = NULL, updated_at = now()
WHERE id = $1 AND claimed_until = $2 AND status = 'PENDING'
"""

COUNT_PENDING = "SELECT count(*) FROM pm.webhook_delivery WHERE status = 'PENDING'"
