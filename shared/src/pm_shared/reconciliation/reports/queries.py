"""The SQL of the reconciliation reports (pm_shared.reconciliation.reports.build).

Each money query takes the period's bounds, `$1` start (inclusive) and `$2` end (exclusive), and reads
the intents that *reached* a state in it from their timeline, `pm.intent_event`: an intent counts in
the period of its first event into that state, so neither a later update of its row nor a replayed
event moves it to another report. The state is written into the SQL, not passed, so the planner can use
a partial index on terminal events (see ``_REACHED``).

Money sums are `numeric` (a sum of bigint); the caller converts them to int exactly.
"""

from __future__ import annotations

# The intents whose first event into `state` lies in [$1, $2). The events in the period are read first
# (MATERIALIZED: the planner otherwise drove the query from pm.intent and probed every intent's timeline,
# 29 s instead of 0.09 s at 1M events), then each candidate's first event into the state is looked up
# through intent_event_intent_idx, a handful of rows per intent. The range read is a sequential scan of
# the whole timeline unless there is
#   CREATE INDEX intent_event_terminal_idx ON pm.intent_event (to_state, at, intent_id)
#       WHERE to_state IN ('SETTLED', 'FAILED');
# (measured at 1M events: a day's report 0.37 s without it, 0.07 s with it).
_REACHED = """
WITH candidate AS MATERIALIZED (
    SELECT e.intent_id, min(e.at) AS at
    FROM pm.intent_event AS e
    WHERE e.to_state = '{state}' AND e.at >= $1 AND e.at < $2
    GROUP BY e.intent_id
), reached AS (
    SELECT c.intent_id FROM candidate AS c
    WHERE c.at = (
        SELECT min(first.at) FROM pm.intent_event AS first
        WHERE first.intent_id = c.intent_id AND first.to_state = '{state}'
    )
), intents AS (
    SELECT i.* FROM pm.intent AS i JOIN reached AS r ON r.intent_id = i.id
)"""


def _reached(state: str) -> str:
    """`_REACHED` for one terminal state, written into the text (a constant of this module, never input)."""
    return _REACHED.format(state=state)


# Settled volume and count per currency and intent type.
VOLUMES = f"""{_reached("SETTLED")}
SELECT currency::text AS currency, type AS intent_type, count(*) AS count, sum(amount) AS amount
FROM intents
GROUP BY currency, type
ORDER BY currency, type
"""

# The house's revenue on settled intents: each fee-rule fee in its own currency (an old fee without
# one is in the intent's), and each exchange's spread in the sold currency (the intent's), by type.
REVENUE = f"""{_reached("SETTLED")}
SELECT currency, source, intent_type, count(*) AS count, sum(amount) AS amount
FROM (
    SELECT coalesce(f.fee->>'currency', i.currency::text) AS currency, 'fee' AS source,
           i.type AS intent_type, (f.fee->>'amount')::bigint AS amount
    FROM intents AS i CROSS JOIN LATERAL jsonb_array_elements(i.fees) AS f(fee)
    UNION ALL
    SELECT i.currency::text, 'fx_spread', i.type, (i.exchange->>'spread')::bigint
    FROM intents AS i
    WHERE i.exchange IS NOT NULL AND (i.exchange->>'spread')::bigint <> 0
) AS earned
GROUP BY currency, source, intent_type
ORDER BY currency, source, intent_type
"""

# What settled exchanges bought, per bought currency (from the liquidity account of that currency).
FX_BOUGHT = f"""{_reached("SETTLED")}
SELECT exchange->>'buyCurrency' AS currency, currency::text AS sold_currency, type AS intent_type,
       count(*) AS count, sum((exchange->>'buyAmount')::bigint) AS amount
FROM intents
WHERE exchange IS NOT NULL
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""

# Failures per currency and failure code (set with the FAILED state, never changed after it).
FAILURES = f"""{_reached("FAILED")}
SELECT currency::text AS currency, failure_code, count(*) AS count, sum(amount) AS amount
FROM intents
GROUP BY currency, failure_code
ORDER BY currency, failure_code
"""

# Unresolved alerts. `resolved_at IS NULL` is `status <> 'RESOLVED'` (constraint
# reconciliation_alert_resolved) written so that reconciliation_alert_open_idx (created_at, partial on
# it) serves both queries.
ALERT_COUNTS = """
SELECT kind, status, count(*) AS count
FROM pm.reconciliation_alert
WHERE resolved_at IS NULL
GROUP BY kind, status
ORDER BY kind, status
"""

# The oldest unresolved alerts first: those waiting longest for someone. `$1`: how many.
OLDEST_ALERTS = """
SELECT id, kind, subject, intent_id, occurrences, status, created_at, last_seen_at
FROM pm.reconciliation_alert
WHERE resolved_at IS NULL
ORDER BY created_at, id
LIMIT $1
"""
