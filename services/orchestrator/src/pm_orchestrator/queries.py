"""SQL of the orchestrator (schema `pm`). Parameters are positional."""

from __future__ import annotations

_INTENT_COLUMNS = """
    id, type, state, step, channel, route, amount, currency, source, target, from_name, to_name,
    comment, requires_monitoring, metadata, fees, created_at, updated_at
"""

SELECT_INTENTS = f"""
SELECT {_INTENT_COLUMNS}
FROM pm.intent
WHERE id = ANY($1::uuid[])
"""

# Open intents that have not moved since $1, oldest first, a page after the cursor ($3, $4) at a time
# (an intent resumed without moving still matches: the cursor, not the filter, moves the sweep on).
SELECT_STALLED = f"""
SELECT {_INTENT_COLUMNS}
FROM pm.intent
WHERE state NOT IN ('SETTLED', 'FAILED') AND updated_at < $1 AND (updated_at, id) > ($3, $4)
ORDER BY updated_at, id
LIMIT $2
"""

# Which of the (user id, currency) pairs have a wallet.
SELECT_WALLETS = """
SELECT m.owner_id, m.currency
FROM pm.tb_account_map AS m
JOIN unnest($1::text[], $2::text[]) AS w(owner_id, currency)
  ON m.owner_kind = 'user' AND m.owner_id = w.owner_id AND m.currency = w.currency AND m.code = 1
"""

SELECT_ROUTES = """
SELECT operation_type, channel, steps
FROM pm.payment_route
WHERE enabled
ORDER BY operation_type, channel
"""

# Any insert (rules are versioned: a change or a retirement is a new row) or route update changes these.
SELECT_FINGERPRINTS = """
SELECT (SELECT count(*) FROM pm.fee_rule) AS fee_count,
       (SELECT max(created_at) FROM pm.fee_rule) AS fee_newest,
       (SELECT count(*) FROM pm.limit_rule) AS limit_count,
       (SELECT max(created_at) FROM pm.limit_rule) AS limit_newest,
       (SELECT count(*) FROM pm.payment_route) AS route_count,
       (SELECT max(updated_at) FROM pm.payment_route) AS route_newest
"""

# Row locks on a batch's intents, taken in id order before its moves: two transactions that move some
# of the same intents (a resumed intent and its own message, or two consumers with duplicates) then
# wait for each other in one order instead of deadlocking.
LOCK_INTENTS = """
SELECT id FROM pm.intent WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""

# The guarded moves of a batch: each UPDATE only matches while the intent is still in the expected
# state and step, and a timeline entry is written for each that did. Returns the ids that moved.
MOVE_INTENTS = """
WITH input AS (
    SELECT *
    FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], $12::text[]
    ) AS t(id, from_state, to_state, from_step, to_step, failure_code, reason, cause, fees, legs,
           channel, route)
    ORDER BY id
), moved AS (
    UPDATE pm.intent AS i
    SET state = input.to_state,
        step = input.to_step,
        failure_code = input.failure_code,
        fees = coalesce(input.fees, i.fees),
        legs = coalesce(input.legs, i.legs),
        channel = coalesce(input.channel, i.channel),
        route = coalesce(string_to_array(input.route, ','), i.route),
        updated_at = clock_timestamp()
    FROM input
    WHERE i.id = input.id
      AND i.state = input.from_state
      AND i.step IS NOT DISTINCT FROM input.from_step
    RETURNING i.id, i.updated_at
), event AS (
    INSERT INTO pm.intent_event (intent_id, from_state, to_state, reason, cause_message_id, at)
    SELECT input.id, input.from_state, input.to_state, input.reason, input.cause, moved.updated_at
    FROM input JOIN moved ON moved.id = input.id
)
SELECT id FROM moved
"""

INSERT_HISTORY = """
INSERT INTO pm.tx_history (
    owner_kind, owner_id, intent_id, type, direction, amount, currency, fee, counterparty_name,
    comment, requires_monitoring, at
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::bigint[],
    $9::text[], $10::text[], $11::boolean[], $12::timestamptz[]
)
ON CONFLICT (owner_kind, owner_id, intent_id, direction) DO NOTHING
"""

# One row per account (the caller sums a batch per account), in account order against deadlocks.
ADD_BALANCES = """
INSERT INTO pm.account_balance AS b (
    account_id, owner_kind, owner_id, currency, code, debits_posted, credits_posted, last_intent_id
)
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::bigint[], $7::bigint[], $8::uuid[]
)
ORDER BY 1
ON CONFLICT (account_id) DO UPDATE
SET debits_posted = b.debits_posted + excluded.debits_posted,
    credits_posted = b.credits_posted + excluded.credits_posted,
    last_intent_id = excluded.last_intent_id,
    updated_at = now()
"""
