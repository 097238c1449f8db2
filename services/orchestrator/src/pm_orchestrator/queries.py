"""SQL of the orchestrator (schema `pm`), run by `store`."""

from __future__ import annotations

_INTENT_COLUMNS = """
    id, type, state, step, channel, route, amount, currency, source, target, from_name, to_name,
    comment, requires_monitoring, metadata, fees, created_at, updated_at, payment, exchange,
    original_intent_id
"""

SELECT_INTENTS = f"""
SELECT {_INTENT_COLUMNS}
FROM pm.intent
WHERE id = ANY($1::uuid[])
"""

# Open intents that have not moved since $1, oldest first, a page after the cursor ($3, $4) at a time
# (an intent resumed without moving still matches: the cursor, not the filter, moves the sweep on).
# The terminal states are spelled out, as in the partial index intent_open_idx, so the index serves
# the sweep (a test checks they are pm_client.api.TERMINAL_STATES).
SELECT_STALLED = f"""
SELECT {_INTENT_COLUMNS}
FROM pm.intent
WHERE state NOT IN ('SETTLED', 'FAILED') AND updated_at < $1 AND (updated_at, id) > ($3, $4)
ORDER BY updated_at, id
LIMIT $2
"""

# Which of the (user id, currency) pairs have a wallet. One primary-key probe per pair, whatever the
# statistics say: as a plain join on a freshly filled table the planner chose a nested loop that
# compared every wallet with every pair (15-85 ms per intake batch of 100 on 1,000 wallets).
SELECT_WALLETS = """
SELECT w.owner_id, w.currency
FROM unnest($1::text[], $2::text[]) AS w(owner_id, currency)
CROSS JOIN LATERAL (
    SELECT 1 FROM pm.tb_account_map AS m
    WHERE m.owner_kind = 'user' AND m.owner_id = w.owner_id AND m.currency = w.currency::char(3)
      AND m.code = 1
    LIMIT 1
) AS found
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

# A batch's moves and everything that goes with them, as ONE statement (one round trip, atomic without
# an explicit transaction). Its four parameters are JSON arrays of typed rows, named field by field
# below (states.MoveRow, states.OutboxRow, projections.HistoryRow, projections.PostingRow):
# - `locked` takes the row locks of the batch's intents in id order first, so two statements that
#   move some of the same intents (a resumed intent and its own message, duplicates in two batches)
#   wait for each other in one order instead of deadlocking;
# - `moved`: each UPDATE only matches while the intent is still in the expected state and awaits the
#   expected step (a statement that waited for a lock re-checks against the committed row);
# - the timeline rows (two for a move `via` a state: from → via, then via → to, in that order of id),
#   the outbox messages ($2, in their order), the settlement's history rows ($3)
#   and posted totals ($4, summed per account in account order) are written only for the intents
#   that moved.
# Returns ('moved', intent id) and ('sent', message id) rows: the outbox rows actually added.
MOVE_INTENTS = """
WITH input AS (
    SELECT *
    FROM json_to_recordset($1::json) AS t(
        id uuid, from_state text, to_state text, from_step text, to_step text, failure_code text,
        reason text, cause text, fees jsonb, legs jsonb, channel text, route text, payment jsonb,
        via text
    )
), locked AS (
    SELECT i.id FROM pm.intent AS i WHERE i.id = ANY(ARRAY(SELECT id FROM input)) ORDER BY i.id FOR UPDATE
), moved AS (
    UPDATE pm.intent AS i
    SET state = input.to_state,
        step = input.to_step,
        failure_code = input.failure_code,
        fees = coalesce(input.fees, i.fees),
        legs = coalesce(input.legs, i.legs),
        channel = coalesce(input.channel, i.channel),
        route = coalesce(string_to_array(input.route, ','), i.route),
        payment = coalesce(input.payment, i.payment),
        updated_at = clock_timestamp()
    FROM input
    WHERE i.id = input.id
      AND i.id IN (SELECT id FROM locked)
      AND i.state = input.from_state
      AND i.step IS NOT DISTINCT FROM input.from_step
    RETURNING i.id, i.updated_at
), event AS (
    INSERT INTO pm.intent_event (intent_id, from_state, to_state, reason, cause_message_id, at)
    SELECT input.id, hop.from_state, hop.to_state, input.reason, input.cause, moved.updated_at
    FROM input
    JOIN moved ON moved.id = input.id
    CROSS JOIN LATERAL (
        VALUES (1, input.from_state, input.via),
               (2, coalesce(input.via, input.from_state), input.to_state)
    ) AS hop(n, from_state, to_state)
    WHERE hop.to_state IS NOT NULL
    ORDER BY input.id, hop.n
), sent AS (
    INSERT INTO pm.outbox (stream, intent_id, message_id, payload)
    SELECT o.stream, o.intent_id, o.message_id, convert_to(o.payload, 'UTF8')
    FROM ROWS FROM (
        json_to_recordset($2::json) AS (
            owner uuid, stream text, intent_id text, message_id text, payload text
        )
    ) WITH ORDINALITY AS o(owner, stream, intent_id, message_id, payload, n)
    JOIN moved ON moved.id = o.owner
    ORDER BY o.n
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
), history AS (
    INSERT INTO pm.tx_history (
        owner_kind, owner_id, intent_id, type, direction, amount, currency, fee, counterparty_name,
        comment, requires_monitoring, at, original_intent_id
    )
    SELECT h.owner_kind, h.owner_id, h.intent_id, h.type, h.direction, h.amount, h.currency, h.fee,
           h.counterparty_name, h.comment, h.requires_monitoring, h.at, h.original_intent_id
    FROM json_to_recordset($3::json) AS h(
        owner_kind text, owner_id text, intent_id uuid, type text, direction text, amount bigint,
        currency text, fee bigint, counterparty_name text, comment text, requires_monitoring boolean,
        at timestamptz, original_intent_id uuid
    )
    JOIN moved ON moved.id = h.intent_id
    ON CONFLICT (owner_kind, owner_id, intent_id, direction) DO NOTHING
), balances AS (
    INSERT INTO pm.account_balance AS b (
        account_id, owner_kind, owner_id, currency, code, debits_posted, credits_posted, last_intent_id
    )
    SELECT l.account_id, min(l.owner_kind), min(l.owner_id), min(l.currency), min(l.code),
           sum(l.debit)::bigint, sum(l.credit)::bigint, (array_agg(l.intent_id ORDER BY l.n DESC))[1]
    FROM ROWS FROM (
        json_to_recordset($4::json) AS (
            intent_id uuid, account_id uuid, owner_kind text, owner_id text, currency text, code integer,
            debit bigint, credit bigint
        )
    ) WITH ORDINALITY AS l(intent_id, account_id, owner_kind, owner_id, currency, code, debit, credit, n)
    JOIN moved ON moved.id = l.intent_id
    GROUP BY l.account_id
    ORDER BY l.account_id
    ON CONFLICT (account_id) DO UPDATE
    SET debits_posted = b.debits_posted + excluded.debits_posted,
        credits_posted = b.credits_posted + excluded.credits_posted,
        last_intent_id = excluded.last_intent_id,
        updated_at = now()
)
SELECT 'moved' AS kind, id::text AS value FROM moved
UNION ALL
SELECT 'sent', message_id FROM sent
"""

# Raised before the move that causes it commits; raising it again (a retried batch) adds nothing.
INSERT_ALERT = """
INSERT INTO pm.reconciliation_alert (kind, intent_id, stream, entry_id, detail)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (kind, stream, entry_id) DO NOTHING
RETURNING id
"""

# How far the PSP attempts of these idempotency keys got (a missing key: none was recorded).
SELECT_PSP_PHASES = """
SELECT idempotency_key, phase FROM pm.psp_tx_map WHERE idempotency_key = ANY($1::text[])
"""

# The fence of a dead-lettered PSP job (see dead_letters): its attempt is finished FAILED JOB_DEAD_LETTERED
# only while nothing can have reached the PSP (no row, or `recorded` / `inquired`); the adapters never
# confirm past a final row. Returns the row as it now stands: fenced, final already, or `confirm_sent`.
FENCE_DEAD_JOB = """
WITH fenced AS (
    INSERT INTO pm.psp_tx_map AS m (
        intent_id, psp, action, idempotency_key, job_message_id, amount, currency, phase, status,
        failure_code, result_message_id, result_at, attempts
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'final', 'FAILED', 'JOB_DEAD_LETTERED', $8, $9, 0)
    ON CONFLICT (idempotency_key) DO UPDATE
    SET phase = 'final', status = 'FAILED', failure_code = 'JOB_DEAD_LETTERED',
        result_message_id = excluded.result_message_id, result_at = excluded.result_at, updated_at = now()
    WHERE m.phase IN ('recorded', 'inquired')
    RETURNING m.intent_id, m.psp, m.phase, m.status, m.failure_code, m.result_message_id, m.result_at,
              m.job_message_id, m.psp_transfer_id, m.trans_ref
)
SELECT * FROM fenced
UNION ALL
SELECT intent_id, psp, phase, status, failure_code, result_message_id, result_at, job_message_id,
       psp_transfer_id, trans_ref
FROM pm.psp_tx_map
WHERE idempotency_key = $4 AND NOT EXISTS (SELECT 1 FROM fenced)
"""
