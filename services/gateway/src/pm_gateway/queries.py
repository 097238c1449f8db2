"""SQL of the gateway (schema `pm`), by name."""

from __future__ import annotations

from pm_shared.fees import queries as fee_queries

# Every column an `Intent` is read from (views.intent).
INTENT_COLUMNS = """
    id, key_id, request_hash, type, state, failure_code, amount, currency, source, target, from_name,
    to_name, comment, requires_monitoring, metadata, fees, legs, created_at, updated_at, payment,
    miniapp_id, exchange, original_intent_id"""

SELECT_INTENT = f"SELECT {INTENT_COLUMNS} FROM pm.intent WHERE id = $1"

SELECT_TIMELINE = """
SELECT at, to_state, from_state, reason FROM pm.intent_event WHERE intent_id = $1 ORDER BY id
"""

# The intent, its first timeline entry and its outbox message in one statement: atomic without an
# explicit transaction, and one round trip. $1 is the new pm.intent row as JSON (writes.NewIntent),
# $2-$4 the outbox message's stream, id and payload. A concurrent request with the same (key,
# Idempotency-Key) inserts nothing (ON CONFLICT), and the caller then reads the winner.
# New intents, each with its first timeline entry and its outbox message, in one statement (one
# request's, or a batch's: pm_gateway.group_commit): $1 the intents' rows as JSON objects, $2 the
# stream, $3 and $4 each intent's message id and payload, in the same order. A row whose
# (key, Idempotency-Key) is taken already (a replay, or a twin in the same batch) is skipped.
INSERT_INTENTS = """
WITH input AS (
    SELECT r.*, e.n
    FROM unnest($1::json[]) WITH ORDINALITY AS e(doc, n)
    CROSS JOIN LATERAL json_populate_record(NULL::pm.intent, e.doc) AS r
), intent AS (
    INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                           source, target, from_name, to_name, comment, requires_monitoring, metadata,
                           miniapp_id, exchange)
    SELECT id, key_id, idempotency_key, request_hash, type, 'CREATED', amount, currency,
           source, target, from_name, to_name, comment, requires_monitoring, metadata, miniapp_id,
           exchange
    FROM input
    ORDER BY n
    ON CONFLICT (key_id, idempotency_key) DO NOTHING
    RETURNING id, created_at
), event AS (
    INSERT INTO pm.intent_event (intent_id, to_state, reason, at)
    SELECT id, 'CREATED', 'accepted by the gateway', created_at FROM intent  -- views.ACCEPTED
), outbox AS (
    INSERT INTO pm.outbox (stream, intent_id, message_id, payload)
    SELECT $2, intent.id::text, m.message_id, m.payload
    FROM intent
    JOIN input USING (id)
    JOIN unnest($3::text[], $4::bytea[]) WITH ORDINALITY AS m(message_id, payload, n) USING (n)
    ORDER BY m.n
)
SELECT id, created_at FROM intent
"""


INTENT_BY_IDEMPOTENCY_KEY = """
SELECT id, request_hash FROM pm.intent WHERE key_id = $1 AND idempotency_key = $2
"""


# Newest first; the cursor is the (created_at, id) of the last row of the previous page.
LIST_INTENTS = f"""
SELECT {INTENT_COLUMNS} FROM pm.intent
WHERE ($1::text IS NULL OR key_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
"""

SELECT_WALLET_ACCOUNTS = """
SELECT currency, account_id FROM pm.tb_account_map
WHERE owner_kind = $1 AND owner_id = $2 AND code = $3
ORDER BY currency
"""

LIST_HISTORY = """
SELECT id, intent_id, type, direction, amount, currency, fee, counterparty_name, comment,
       requires_monitoring, at, original_intent_id
FROM pm.tx_history
WHERE owner_kind = $1 AND owner_id = $2
  AND ($3::timestamptz IS NULL OR (at, id) < ($3, $4::bigint))
ORDER BY at DESC, id DESC
LIMIT $5
"""

# --- admin: rules and routes ---------------------------------------------------------------------

_FEE_RULE_COLUMNS = fee_queries.COLUMNS

# The newest version of every fee rule, retired ones included (the admin sees everything).
LIST_FEE_RULES = f"""
SELECT DISTINCT ON (rule_id) {_FEE_RULE_COLUMNS}
FROM pm.fee_rule
ORDER BY rule_id, version DESC
"""

LATEST_FEE_RULE = f"""
SELECT {_FEE_RULE_COLUMNS} FROM pm.fee_rule WHERE rule_id = $1 ORDER BY version DESC LIMIT 1
"""

# A new version of a fee rule, from a pm.fee_rule row as JSON; concurrent writers of one rule id are
# serialised by the primary key (the loser's insert fails and is retried by the caller).
INSERT_FEE_RULE_VERSION = fee_queries.INSERT_RULE

_LIMIT_RULE_COLUMNS = """
    rule_id, version, subject_kind, subject, operation_type, currency, period, max_amount, max_count,
    status"""

LIST_LIMIT_RULES = f"""
SELECT DISTINCT ON (rule_id) {_LIMIT_RULE_COLUMNS}
FROM pm.limit_rule
ORDER BY rule_id, version DESC
"""

LATEST_LIMIT_RULE = f"""
SELECT {_LIMIT_RULE_COLUMNS} FROM pm.limit_rule WHERE rule_id = $1 ORDER BY version DESC LIMIT 1
"""

INSERT_LIMIT_RULE_VERSION = f"""
INSERT INTO pm.limit_rule (rule_id, version, subject_kind, subject, operation_type, currency, period,
                           max_amount, max_count, status)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9
FROM pm.limit_rule WHERE rule_id = $1
RETURNING {_LIMIT_RULE_COLUMNS}
"""

LIST_ROUTES = """
SELECT operation_type, channel, steps, enabled, updated_at FROM pm.payment_route
ORDER BY operation_type, channel
"""

UPSERT_ROUTE = """
INSERT INTO pm.payment_route (operation_type, channel, steps, enabled, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (operation_type, channel)
DO UPDATE SET steps = excluded.steps, enabled = excluded.enabled, updated_at = now()
RETURNING operation_type, channel, steps, enabled, updated_at
"""


# --- payment requests -------------------------------------------------------------------------------

# `shown`: the status as the API shows it, by the database's clock (an OPEN request past its time is
# EXPIRED; nothing writes that, so no sweep is needed and no answer disagrees with the clock).
_REQUEST_COLUMNS = """id, merchant_id, miniapp_id, user_id, amount, currency, description, status, key_id,
    request_hash, intent_id, created_at, expires_at, decided_at,
    CASE WHEN status = 'OPEN' AND expires_at <= now() THEN 'EXPIRED' ELSE status END AS shown"""

# Nothing is written when the (merchant key, Idempotency-Key) pair is taken: the caller reads that one.
INSERT_PAYMENT_REQUEST = f"""
INSERT INTO pm.payment_request (id, merchant_id, miniapp_id, user_id, amount, currency, description,
                                key_id, idempotency_key, request_hash, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11::float8))
ON CONFLICT (key_id, idempotency_key) DO NOTHING
RETURNING {_REQUEST_COLUMNS}
"""

SELECT_PAYMENT_REQUEST_BY_KEY = f"""
SELECT {_REQUEST_COLUMNS} FROM pm.payment_request WHERE key_id = $1 AND idempotency_key = $2
"""

SELECT_PAYMENT_REQUEST = f"SELECT {_REQUEST_COLUMNS} FROM pm.payment_request WHERE id = $1"

# A confirmation's reads in one statement: the request, the key that asked (status and permissions,
# as JSON) and its mini-app (its row as JSON, null when gone). Subqueries, so the request's columns
# stay unqualified.
SELECT_CONFIRMATION = f"""
SELECT {_REQUEST_COLUMNS},
       (SELECT jsonb_build_object('status', k.status, 'permissions', k.permissions)
        FROM pm.service_key AS k WHERE k.key_id = r.key_id) AS merchant_key,
       (SELECT to_jsonb(m) FROM pm.miniapp AS m WHERE m.miniapp_id = r.miniapp_id) AS miniapp
FROM pm.payment_request AS r
WHERE r.id = $1
"""

LIST_USER_PAYMENT_REQUESTS = f"""
SELECT {_REQUEST_COLUMNS} FROM pm.payment_request WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2
"""

# An answer is taken only from an OPEN request within its time, by its user: of two at once, one wins.
CONFIRM_PAYMENT_REQUEST = f"""
UPDATE pm.payment_request
SET status = 'CONFIRMED', intent_id = $3, decided_at = now()
WHERE id = $1 AND user_id = $2 AND status = 'OPEN' AND expires_at > now()
RETURNING {_REQUEST_COLUMNS}
"""

DECLINE_PAYMENT_REQUEST = f"""
UPDATE pm.payment_request
SET status = 'DECLINED', decided_at = now()
WHERE id = $1 AND user_id = $2 AND status = 'OPEN' AND expires_at > now()
RETURNING {_REQUEST_COLUMNS}
"""


# Whether $2 (a party, as pm.intent.source/target store it) pays or is paid by intent $1: an end user
# may read such an intent ({"kind": "user", "id": …}), a merchant refund one ({"kind": "merchant", …}).
IS_PARTY_TO_INTENT = """
SELECT EXISTS (SELECT 1 FROM pm.intent WHERE id = $1 AND (source @> $2::jsonb OR target @> $2::jsonb))
"""

IS_USERS_INTENT = IS_PARTY_TO_INTENT
