"""Every SQL statement on pm.fee_rule, by name."""

from __future__ import annotations

_COLUMNS = """
    rule_id, version, operation_type, condition, amount, timing, payer, fee_account_code, priority,
    max_fee, active_from, active_until, status, description
"""

# Per rule_id only its newest version, and only while that version is active: retiring the newest
# version hides the older ones too.
SELECT_CURRENT_RULES = f"""
SELECT {_COLUMNS}
FROM (
    SELECT DISTINCT ON (rule_id) {_COLUMNS}
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

# The next version of $1 (1 for a new rule). Two concurrent inserts of the same rule_id collide on
# the primary key; the loser gets a UniqueViolationError and may retry.
INSERT_RULE = f"""
INSERT INTO pm.fee_rule ({_COLUMNS})
SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
FROM pm.fee_rule
WHERE rule_id = $1
RETURNING {_COLUMNS}
"""
