"""SQL the operator tools run themselves: `pm.reconciliation_alert` (migrations 0009, 0018) and a count of
`pm.service_key`. Parameters are positional."""

from __future__ import annotations

# Newest first; $1: also resolved ones, $2: at most this many.
SELECT_ALERTS = """
SELECT id, kind, intent_id, stream, entry_id, detail, created_at, resolved_at
FROM pm.reconciliation_alert
WHERE $1 OR resolved_at IS NULL
ORDER BY id DESC
LIMIT $2
"""

# Only open ones: resolving twice keeps the first time. Returns the ids resolved now.
RESOLVE_ALERTS = """
UPDATE pm.reconciliation_alert SET resolved_at = now(), status = 'RESOLVED', resolved_by = 'operator'
WHERE id = ANY($1::bigint[]) AND resolved_at IS NULL
RETURNING id
"""

SELECT_KNOWN_IDS = "SELECT id FROM pm.reconciliation_alert WHERE id = ANY($1::bigint[])"

# How many service keys hold a secret encrypted under the key-encryption key (the front door's key,
# made by migration 0015, holds none: it never signs).
COUNT_SERVICE_KEYS = "SELECT count(*) FROM pm.service_key WHERE length(secret_encrypted) > 0"
