"""Every SQL statement on pm.fee_rule, by name."""

from __future__ import annotations

COLUMNS = """
    rule_id, version, operation_type, condition, amount, timing, payer, fee_account_code, priority,
    max_fee, active_from, active_until, status, description
"""

# Per rule_id only its newest version, and only while that version is active: retiring the newest
# version hides the older ones too.
SELECT_CURRENT_RULES = f"""
SELECT {COLUMNS}
FROM (
    SELECT DISTINCT ON (rule_id) {COLUMNS}
    FROM pm.fee_rule
    ORDER BY rule_id, version DESC
) AS newest
WHERE status = 'active'
ORDER BY operation_type, priority, rule_id
"""

# Any insert changes the count, so (count, newest created_at) is enough to notice a change.
SELECT_FINGERPRINT = """
SELECT count(*) AS rule_count, max(created_at) AS newest
FROM pm.fee_rule
"""

# The next version of the rule given as $1, a pm.fee_rule row as JSON (its version is ignored; no
# active_from means now): version 1 for a new rule. Two concurrent inserts of the same rule_id
# collide on the primary key; the loser gets a UniqueViolationError and may retry.
INSERT_RULE = f"""
INSERT INTO pm.fee_rule ({COLUMNS})
SELECT r.rule_id, (SELECT coalesce(max(version), 0) + 1 FROM pm.fee_rule WHERE rule_id = r.rule_id),
       r.operation_type, r.condition, r.amount, r.timing, r.payer, r.fee_account_code, r.priority,
       r.max_fee, coalesce(r.active_from, now()), r.active_until, r.status, r.description
FROM json_populate_record(NULL::pm.fee_rule, $1::json) AS r
RETURNING {COLUMNS}
"""
