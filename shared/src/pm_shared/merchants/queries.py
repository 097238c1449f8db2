"""SQL of `pm.merchant` and `pm.merchant_event` (pm_shared.merchants.store)."""

_COLUMNS = """merchant_id, name, status, currencies, key_id, created_by, idempotency_key, request_hash,
    created_at, updated_at, deactivated_at, accounts_state, closings"""

# Nothing is written when the (admin key, Idempotency-Key) pair or the merchant id is taken already:
# the caller then reads what is there (a replay, or a conflict).
INSERT_MERCHANT = f"""
INSERT INTO pm.merchant (merchant_id, name, currencies, key_id, created_by, idempotency_key, request_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
RETURNING {_COLUMNS}
"""

SELECT_BY_IDEMPOTENCY_KEY = f"""
SELECT {_COLUMNS}
FROM pm.merchant
WHERE created_by = $1 AND idempotency_key = $2
"""

SELECT_MERCHANT = f"""
SELECT {_COLUMNS}
FROM pm.merchant
WHERE merchant_id = $1
"""

SELECT_MERCHANTS = f"""
SELECT {_COLUMNS}
FROM pm.merchant
ORDER BY created_at, merchant_id
"""

# The status changes only when it differs: a repeated deactivation keeps the first time and writes
# no second event (the caller records one only for a row this returns).
SET_STATUS = f"""
UPDATE pm.merchant
SET status = $2,
    updated_at = now(),
    deactivated_at = CASE WHEN $2 = 'INACTIVE' THEN now() END
WHERE merchant_id = $1 AND status <> $2
RETURNING {_COLUMNS}
"""

INSERT_EVENT = """
INSERT INTO pm.merchant_event (merchant_id, action, actor, detail)
VALUES ($1, $2, $3, $4::jsonb)
"""

SELECT_EVENTS = """
SELECT at, action, actor, detail
FROM pm.merchant_event
WHERE merchant_id = $1
ORDER BY id
"""

# --- closing and reopening the accounts (pm_shared.merchants.closing) --------------------------------

# Each step moves from one state only: of two concurrent callers, one moves it and the other re-reads.
BEGIN_CLOSE = f"""
UPDATE pm.merchant
SET accounts_state = 'CLOSING', closings = closings + 1, updated_at = now()
WHERE merchant_id = $1 AND status = 'INACTIVE' AND accounts_state = 'OPEN'
RETURNING {_COLUMNS}
"""

FINISH_CLOSE = f"""
UPDATE pm.merchant
SET accounts_state = 'CLOSED', updated_at = now()
WHERE merchant_id = $1 AND accounts_state = 'CLOSING'
RETURNING {_COLUMNS}
"""

BEGIN_REOPEN = f"""
UPDATE pm.merchant
SET accounts_state = 'REOPENING', updated_at = now()
WHERE merchant_id = $1 AND accounts_state = 'CLOSED'
RETURNING {_COLUMNS}
"""

FINISH_REOPEN = f"""
UPDATE pm.merchant
SET accounts_state = 'OPEN', updated_at = now()
WHERE merchant_id = $1 AND accounts_state = 'REOPENING'
RETURNING {_COLUMNS}
"""

# Intents still moving money to or from the merchant ($1: its party, {"kind": "merchant", "id": …}).
COUNT_IN_FLIGHT = """
SELECT count(*) FROM pm.intent
WHERE state NOT IN ('SETTLED', 'FAILED') AND (source @> $1::jsonb OR target @> $1::jsonb)
"""

LOCK_MERCHANT_ID = "SELECT pg_advisory_xact_lock(hashtextextended('pm.merchant:' || $1, 0))"

# --- mini-apps ---------------------------------------------------------------------------------------

_MINIAPP_COLUMNS = """miniapp_id, merchant_id, name, status, operations, max_charge, created_by, created_at,
    updated_at, deactivated_at"""

INSERT_MINIAPP = f"""
INSERT INTO pm.miniapp (miniapp_id, merchant_id, name, operations, max_charge, created_by)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (miniapp_id) DO NOTHING
RETURNING {_MINIAPP_COLUMNS}
"""

SELECT_MINIAPP = f"""
SELECT {_MINIAPP_COLUMNS}
FROM pm.miniapp
WHERE miniapp_id = $1
"""

SELECT_MINIAPPS = f"""
SELECT {_MINIAPP_COLUMNS}
FROM pm.miniapp
WHERE $1::text IS NULL OR merchant_id = $1
ORDER BY merchant_id, miniapp_id
"""

DEACTIVATE_MINIAPP = f"""
UPDATE pm.miniapp
SET status = 'INACTIVE',
    updated_at = now(),
    deactivated_at = coalesce(deactivated_at, now())
WHERE miniapp_id = $1
RETURNING {_MINIAPP_COLUMNS}
"""
