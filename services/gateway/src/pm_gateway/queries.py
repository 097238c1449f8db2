"""SQL of the gateway (schema `pm`, migration 0005). Parameters are positional."""

from __future__ import annotations

# The intent, its first timeline entry and its outbox message in one statement: atomic without an
# explicit transaction, and one round trip. A concurrent request with the same (key, Idempotency-Key)
# inserts nothing (ON CONFLICT), and the caller then reads the winner.
INSERT_INTENT = """
WITH intent AS (
    INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                           source, target, from_name, to_name, comment, requires_monitoring, metadata)
    VALUES ($1, $2, $3, $4, $5, 'CREATED', $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12, $13, $14::jsonb)
    ON CONFLICT (key_id, idempotency_key) DO NOTHING
    RETURNING id, created_at
), event AS (
    INSERT INTO pm.intent_event (intent_id, to_state, reason, at)
    SELECT id, 'CREATED', 'accepted by the gateway', created_at FROM intent
), outbox AS (
    INSERT INTO pm.outbox (stream, intent_id, message_id, payload)
    SELECT $15, id::text, $16, $17 FROM intent
)
SELECT id, created_at FROM intent
"""

_INTENT_COLUMNS = """
    id, key_id, request_hash, type, state, failure_code, amount, currency, source, target, from_name,
    to_name, comment, requires_monitoring, metadata, fees, legs, created_at, updated_at"""

SELECT_BY_IDEMPOTENCY_KEY = f"""
SELECT {_INTENT_COLUMNS} FROM pm.intent WHERE key_id = $1 AND idempotency_key = $2
"""

SELECT_INTENT = f"SELECT {_INTENT_COLUMNS} FROM pm.intent WHERE id = $1"

SELECT_TIMELINE = """
SELECT at, to_state, from_state, reason FROM pm.intent_event WHERE intent_id = $1 ORDER BY id
"""

# Newest first; the cursor is the (created_at, id) of the last row of the previous page.
LIST_INTENTS = f"""
SELECT {_INTENT_COLUMNS} FROM pm.intent
WHERE ($1::text IS NULL OR key_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
"""

# Rows of an intent still unpublished a while after they were written: the publish after commit
# failed (or the process died). Younger rows are most likely being published right now, or are
# published and not yet marked (marks are batched), so a replay leaves them alone.
SELECT_UNPUBLISHED = """
SELECT message_id, stream, payload FROM pm.outbox
WHERE intent_id = $1 AND published_at IS NULL AND created_at < now() - interval '5 seconds'
ORDER BY id
"""

MARK_PUBLISHED = """
UPDATE pm.outbox SET published_at = now(), attempts = attempts + 1
WHERE message_id = ANY($1::text[]) AND published_at IS NULL
"""

SELECT_WALLET_ACCOUNTS = """
SELECT currency, account_id FROM pm.tb_account_map
WHERE owner_kind = $1 AND owner_id = $2 AND code = $3
ORDER BY currency
"""

LIST_HISTORY = """
SELECT id, intent_id, type, direction, amount, currency, fee, counterparty_name, comment,
       requires_monitoring, at
FROM pm.tx_history
WHERE owner_kind = $1 AND owner_id = $2
  AND ($3::timestamptz IS NULL OR (at, id) < ($3, $4::bigint))
ORDER BY at DESC, id DESC
LIMIT $5
"""
