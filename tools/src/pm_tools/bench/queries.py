"""Every SQL statement the saga and PSP benchmarks run, by name. Parameters are positional."""

from __future__ import annotations

# Intents in CREATED, as the gateway leaves them, one row per element of the arrays.
# $1 key id, $2 request hash, $3 amount, $4 currency, $5 ids, $6 payers, $7 payees.
INSERT_P2P = """
INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                       source, target, from_name, to_name)
SELECT t.id, $1, 'bench-' || t.id::text, $2, 'P2P', 'CREATED', $3, $4,
       jsonb_build_object('kind', 'user', 'id', t.payer), jsonb_build_object('kind', 'user', 'id', t.payee),
       t.payer, t.payee
FROM unnest($5::uuid[], $6::text[], $7::text[]) AS t(id, payer, payee)
"""

# $1 key id, $2 request hash, $3 amount, $4 currency, $5 the PromptPay party (JSON), $6 ids, $7 payers.
INSERT_WITHDRAWALS = """
INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                       source, target, from_name)
SELECT t.id, $1, 'bench-' || t.id::text, $2, 'PROMPTPAY_WITHDRAWAL', 'CREATED', $3, $4,
       jsonb_build_object('kind', 'user', 'id', t.payer), $5::jsonb, t.payer
FROM unnest($6::uuid[], $7::text[]) AS t(id, payer)
"""

COUNT_UNPUBLISHED = "SELECT count(*) FROM pm.outbox WHERE published_at IS NULL"

# $1: the terminal states.
COUNT_OPEN = "SELECT count(*) FROM pm.intent WHERE state <> ALL($1::text[])"

SELECT_TIMELINE = """
SELECT intent_id::text, to_state, at FROM pm.intent_event WHERE intent_id = ANY($1::uuid[])
"""

PAID = "AUTHORIZED(paid)"
"""The state `SELECT_PSP_TIMELINE` names the row the orchestrator writes when the adapter's
result says the PSP paid."""

# A withdrawal writes AUTHORIZED twice: from VALIDATED (the hold), then from AUTHORIZED when the PSP
# result comes back. The second is told apart by its reason; an UNKNOWN result's row (outcome not
# known yet, also AUTHORIZED → AUTHORIZED) is left out. min(at): the first row of each state counts.
SELECT_PSP_TIMELINE = f"""
SELECT intent_id::text,
       CASE WHEN from_state = 'AUTHORIZED' AND to_state = 'AUTHORIZED' THEN '{PAID}' ELSE to_state END
           AS to_state,
       min(at) AS at
FROM pm.intent_event
WHERE intent_id = ANY($1::uuid[])
  AND NOT (from_state IS NOT DISTINCT FROM 'AUTHORIZED' AND to_state = 'AUTHORIZED'
           AND coalesce(reason, '') NOT LIKE '% succeeded%')
GROUP BY 1, 2
"""

SELECT_OUTCOMES = """
SELECT state, failure_code, count(*) AS n FROM pm.intent WHERE id = ANY($1::uuid[])
GROUP BY state, failure_code
"""

# The attempts of the IPPS payouts of intents $1: recorded at `created_at`, final at `result_at`.
SELECT_PAYOUT_ATTEMPTS = """
SELECT created_at, result_at, attempts, polls FROM pm.psp_tx_map
WHERE psp = 'ipps' AND action = 'payout' AND intent_id = ANY($1::text[])
"""

# OPEN payment requests, as the gateway leaves them, one row per element of the arrays.
# $1 merchant id, $2 mini-app id, $3 the merchant's key id, $4 amount, $5 currency, $6 a request hash,
# $7 seconds to expiry, $8 ids, $9 users.
INSERT_PAYMENT_REQUESTS = """
INSERT INTO pm.payment_request (id, merchant_id, miniapp_id, user_id, amount, currency, description,
                                key_id, idempotency_key, request_hash, expires_at)
SELECT t.id, $1, $2, t.user_id, $4, $5, 'pm bench', $3, 'bench-' || t.id::text, $6,
       now() + make_interval(secs => $7::float8)
FROM unnest($8::uuid[], $9::text[]) AS t(id, user_id)
"""

# The intents of $1 that are in one of the states $2, with their state.
SELECT_IN_STATES = """
SELECT id::text AS id, state FROM pm.intent WHERE id = ANY($1::uuid[]) AND state = ANY($2::text[])
"""

# --- merchant webhooks (bench.webhooks) ----------------------------------------------------------

# Deliveries waiting (not due for an hour), one per element of the arrays: $1 webhook ids, $2 endpoint
# ids, $3 merchant ids, $4 the payload (the same body for each).
INSERT_DELIVERIES = """
INSERT INTO pm.webhook_delivery (webhook_id, endpoint_id, merchant_id, event_type, payload, next_attempt_at)
SELECT t.webhook_id, t.endpoint_id, t.merchant_id, 'intent.settled', $4, now() + interval '1 hour'
FROM unnest($1::text[], $2::text[], $3::text[]) AS t(webhook_id, endpoint_id, merchant_id)
"""

RELEASE_DELIVERIES = "UPDATE pm.webhook_delivery SET next_attempt_at = now() WHERE status = 'PENDING'"

COUNT_DELIVERED = "SELECT count(*) FROM pm.webhook_delivery WHERE status = 'DELIVERED'"

COUNT_FAILED_ATTEMPTS = (
    "SELECT count(*) FROM pm.webhook_attempt WHERE status_code IS NULL OR status_code >= 300"
)

# Settled MINIAPP_CREDIT intents of merchants, as the fan-out reads them: $1 ids, $2 merchant ids,
# $3 merchant key ids, $4 payees.
INSERT_MERCHANT_CREDITS = """
INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                       source, target, miniapp_id)
SELECT t.id, t.key_id, 'bench-' || t.id::text, '\\x00', 'MINIAPP_CREDIT', 'SETTLED', 1500, 'THB',
       jsonb_build_object('kind', 'merchant', 'id', t.merchant_id),
       jsonb_build_object('kind', 'user', 'id', t.payee), 'bench-app'
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t(id, merchant_id, key_id, payee)
"""

# Event → delivered, per intent: when its delivery was recorded DELIVERED (Unix seconds).
SELECT_DELIVERED_AT = """
SELECT intent_id::text, extract(epoch FROM delivered_at)::float8
FROM pm.webhook_delivery WHERE status = 'DELIVERED' AND intent_id IS NOT NULL
"""

MERCHANT_KEY = "SELECT key_id FROM pm.merchant WHERE merchant_id = $1"
