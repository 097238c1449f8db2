"""SQL of the intents package (schema `pm`), by name: the refund intake (`pm_shared.intents.refunds`)."""

from __future__ import annotations

# The original's row, locked until the refund's transaction ends: every refund of one original waits
# here for the one before it, so each adds up the refunds already made (REFUNDED) before its own.
LOCK_ORIGINAL = """
SELECT id, type, state, amount, currency, source, target, miniapp_id
FROM pm.intent WHERE id = $1
FOR UPDATE
"""

REFUND_BY_IDEMPOTENCY_KEY = """
SELECT id, created_at, request_hash FROM pm.intent WHERE key_id = $1 AND idempotency_key = $2
"""

# What an original has given back or is giving back: its refunds that have not failed (a CREATED,
# VALIDATED or AUTHORIZED refund may still settle, so it counts).
REFUNDED = """
SELECT coalesce(sum(amount), 0)::bigint FROM pm.intent
WHERE original_intent_id = $1 AND type = 'REFUND' AND state <> 'FAILED'
"""

# The refund, its first timeline entry and its outbox message, as the gateway's INSERT_INTENTS writes
# an intent (pm_gateway.queries). $1 is the new pm.intent row as JSON (refunds._row), $2-$4 the
# outbox message's stream, id and payload. A concurrent request with the same (key, Idempotency-Key)
# inserts nothing (ON CONFLICT), and the caller then reads the winner.
INSERT_REFUND = """
WITH intent AS (
    INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                           source, target, from_name, to_name, comment, metadata, miniapp_id,
                           original_intent_id)
    SELECT id, key_id, idempotency_key, request_hash, 'REFUND', 'CREATED', amount, currency,
           source, target, from_name, to_name, comment, metadata, miniapp_id, original_intent_id
    FROM json_populate_record(NULL::pm.intent, $1::json)
    ON CONFLICT (key_id, idempotency_key) DO NOTHING
    RETURNING id, created_at
), event AS (
    INSERT INTO pm.intent_event (intent_id, to_state, reason, at)
    SELECT id, 'CREATED', 'accepted by the gateway', created_at FROM intent  -- pm_gateway.views.ACCEPTED
), outbox AS (
    INSERT INTO pm.outbox (stream, intent_id, message_id, payload)
    SELECT $2, id::text, $3, $4 FROM intent
)
SELECT id, created_at FROM intent
"""
