"""SQL of the webhook endpoints, deliveries and their log as an operator manages them
(`pm_shared.webhooks.endpoints`, `pm_shared.webhooks.deliveries`). The sender's own queries are in
its package (`pm_webhooks`)."""

_ENDPOINT = """endpoint_id, merchant_id, url, event_types, status, disabled_reason, failing_since,
    CASE WHEN previous_until > now() THEN previous_until END AS previous_secret_until,
    created_by, idempotency_key, request_hash, created_at, updated_at"""

# Nothing is written when the (admin key, Idempotency-Key) pair is taken: the caller reads what is
# there (a replay, or the key reused with another request). The unique index makes a concurrent
# creation with the same pair wait for the first one's transaction, then find its row.
INSERT_ENDPOINT = f"""
INSERT INTO pm.webhook_endpoint (
    endpoint_id, merchant_id, url, event_types, secret_encrypted, created_by, idempotency_key, request_hash
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (created_by, idempotency_key) DO NOTHING
RETURNING {_ENDPOINT}
"""

# `rotated`: whether the secret the creation made has been replaced (a replayed creation then no
# longer shows it).
SELECT_BY_IDEMPOTENCY_KEY = f"""
SELECT {_ENDPOINT}, secret_encrypted,
    EXISTS (
        SELECT 1 FROM pm.webhook_event_log l
        WHERE l.endpoint_id = webhook_endpoint.endpoint_id AND l.action = 'rotated'
    ) AS rotated
FROM pm.webhook_endpoint
WHERE created_by = $1 AND idempotency_key = $2
"""

SELECT_ENDPOINT = f"""
SELECT {_ENDPOINT}
FROM pm.webhook_endpoint
WHERE endpoint_id = $1
"""

SELECT_MERCHANT_ENDPOINTS = f"""
SELECT {_ENDPOINT}
FROM pm.webhook_endpoint
WHERE merchant_id = $1
ORDER BY created_at, endpoint_id
"""

SELECT_MERCHANT = "SELECT 1 FROM pm.merchant WHERE merchant_id = $1"

# The secrets that sign now: the current one, and the previous one while its grace period lasts (by
# the database's clock, as the sender reads it).
SELECT_SECRETS = """
SELECT secret_encrypted,
    CASE WHEN previous_until > now() THEN previous_secret_encrypted END AS previous_encrypted
FROM pm.webhook_endpoint
WHERE endpoint_id = $1
"""

# $3: the grace period in seconds. The replaced secret signs until then; with none (0), it is dropped
# at once. A rotation within another's grace period drops the oldest: two secrets at most sign.
ROTATE_SECRET = f"""
UPDATE pm.webhook_endpoint
SET previous_secret_encrypted = CASE WHEN $3::float8 > 0 THEN secret_encrypted END,
    previous_until = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8) END,
    secret_encrypted = $2,
    updated_at = now()
WHERE endpoint_id = $1
RETURNING {_ENDPOINT}
"""

# Each changes the row only when its status differs, so a repeat writes nothing and logs nothing.
DISABLE_ENDPOINT = f"""
UPDATE pm.webhook_endpoint
SET status = 'DISABLED', disabled_reason = $2, updated_at = now()
WHERE endpoint_id = $1 AND status = 'ENABLED'
RETURNING {_ENDPOINT}
"""

ENABLE_ENDPOINT = f"""
UPDATE pm.webhook_endpoint
SET status = 'ENABLED', disabled_reason = NULL, failing_since = NULL, updated_at = now()
WHERE endpoint_id = $1 AND status = 'DISABLED'
RETURNING {_ENDPOINT}
"""

INSERT_LOG = """
INSERT INTO pm.webhook_event_log (endpoint_id, delivery_id, action, actor, detail)
VALUES ($1, $2, $3, $4, $5)
"""

# An endpoint's own changes (not the replays of its deliveries), the latest 100, oldest first.
SELECT_ENDPOINT_LOG = """
SELECT action, actor, detail, at
FROM (
    SELECT id, action, actor, detail, at
    FROM pm.webhook_event_log
    WHERE endpoint_id = $1 AND delivery_id IS NULL
    ORDER BY id DESC
    LIMIT 100
) latest
ORDER BY id
"""

# --- deliveries -----------------------------------------------------------------------------------

_DELIVERY = """id, webhook_id, endpoint_id, merchant_id, event_type, intent_id, status, attempts,
    next_attempt_at, replay_by, last_status_code, last_error, created_at, delivered_at, updated_at"""

# A page, newest first: one query per filter, so each walks its own index ((endpoint_id, id DESC),
# (merchant_id, id DESC), the primary key) whatever plan PostgreSQL caches. $1: the status or null;
# $2: only ids below it; $3: how many.
SELECT_DELIVERIES = f"""
SELECT {_DELIVERY}
FROM pm.webhook_delivery
WHERE ($1::text IS NULL OR status = $1) AND id < $2
ORDER BY id DESC
LIMIT $3
"""

SELECT_MERCHANT_DELIVERIES = f"""
SELECT {_DELIVERY}
FROM pm.webhook_delivery
WHERE merchant_id = $4 AND ($1::text IS NULL OR status = $1) AND id < $2
ORDER BY id DESC
LIMIT $3
"""

SELECT_ENDPOINT_DELIVERIES = f"""
SELECT {_DELIVERY}
FROM pm.webhook_delivery
WHERE endpoint_id = $4 AND ($5::text IS NULL OR merchant_id = $5)
    AND ($1::text IS NULL OR status = $1) AND id < $2
ORDER BY id DESC
LIMIT $3
"""

SELECT_DELIVERY = f"""
SELECT {_DELIVERY}, payload
FROM pm.webhook_delivery
WHERE id = $1
"""

SELECT_ATTEMPTS = """
SELECT attempt, trigger, at, status_code, error, latency_ms, response_excerpt, actor
FROM pm.webhook_attempt
WHERE delivery_id = $1
ORDER BY id
"""

# A replay holds the delivery and, shared, its endpoint: a disabling waits for it (or it for the
# disabling), so no replay is accepted for an endpoint disabled meanwhile. `in_flight_s`: how long a
# sender's claim on it still runs (an attempt under way), else null.
LOCK_DELIVERY = """
SELECT d.id, d.endpoint_id, e.status AS endpoint_status,
    CASE WHEN d.claimed_until > now()
        THEN ceil(extract(epoch FROM d.claimed_until - now()))::integer END AS in_flight_s
FROM pm.webhook_delivery d
JOIN pm.webhook_endpoint e ON e.endpoint_id = d.endpoint_id
WHERE d.id = $1
FOR NO KEY UPDATE OF d
FOR SHARE OF e
"""

# Whatever its status: due now, its attempts as they are, the next one a replay asked for by $2.
REPLAY_DELIVERY = f"""
UPDATE pm.webhook_delivery
SET status = 'PENDING', next_attempt_at = now(), replay_by = $2, updated_at = now()
WHERE id = $1
RETURNING {_DELIVERY}
"""
