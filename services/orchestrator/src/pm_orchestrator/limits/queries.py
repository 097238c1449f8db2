"""Every SQL statement of the limits library, by name."""

from __future__ import annotations

_COLUMNS = """
    rule_id, version, subject_kind, subject, operation_type, currency, period, max_amount, max_count,
    status
"""

# Per rule_id only its newest version, and only while that version is active: retiring the newest
# version hides the older ones too (as for fee rules).
SELECT_CURRENT_RULES = f"""
SELECT {_COLUMNS}
FROM (
    SELECT DISTINCT ON (rule_id) {_COLUMNS}
    FROM pm.limit_rule
    ORDER BY rule_id, version DESC
) AS newest
WHERE status = 'active'
ORDER BY rule_id
"""

# What a user has spent of one type and currency in [$4, $5): every intent it is the source of that
# has not failed, except $6 (the intent being reserved, which the caller counts itself).
SELECT_USAGE = """
SELECT coalesce(sum(amount), 0)::bigint AS used_amount, count(*)::bigint AS used_count
FROM pm.intent
WHERE source ->> 'id' = $1
  AND type = $2
  AND currency = $3
  AND created_at >= $4
  AND created_at < $5
  AND state <> 'FAILED'
  AND id::text <> $6
"""
