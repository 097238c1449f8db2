"""Every SQL statement on pm.service_key, by name."""

from __future__ import annotations

# Every column but the encrypted secrets: what a ServiceKey is built from.
_COLUMNS = """
    key_id, status, permissions::text AS permissions, description, created_at, rotated_at,
    deactivated_at, last_used_at, previous_valid_until
"""

INSERT_KEY = f"""
INSERT INTO pm.service_key (key_id, secret_encrypted, permissions, description)
VALUES ($1, $2, $3::jsonb, $4)
RETURNING {_COLUMNS}
"""

# The current secret becomes the previous one until now() + grace; a grace of 0 (or less) drops it.
ROTATE_KEY = f"""
UPDATE pm.service_key
SET previous_encrypted = CASE WHEN $3::float8 > 0 THEN secret_encrypted END,
    previous_valid_until = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8) END,
    secret_encrypted = $2,
    rotated_at = now()
WHERE key_id = $1
RETURNING {_COLUMNS}
"""

# Deactivating again keeps the first deactivation time.
DEACTIVATE_KEY = f"""
UPDATE pm.service_key
SET status = 'inactive',
    deactivated_at = coalesce(deactivated_at, now())
WHERE key_id = $1
RETURNING {_COLUMNS}
"""

REACTIVATE_KEY = f"""
UPDATE pm.service_key
SET status = 'active',
    deactivated_at = NULL
WHERE key_id = $1
RETURNING {_COLUMNS}
"""

SELECT_KEYS = f"""
SELECT {_COLUMNS}
FROM pm.service_key
ORDER BY created_at, key_id
"""

SELECT_KEY = f"""
SELECT {_COLUMNS}
FROM pm.service_key
WHERE key_id = $1
"""

# The previous secret as valid only while it is inside its grace period, by the database's clock;
# after that as retired (a request signed with it is refused, and told why).
SELECT_SECRETS = f"""
SELECT {_COLUMNS},
    secret_encrypted,
    CASE WHEN previous_valid_until > now() THEN previous_encrypted END AS previous_encrypted,
    CASE WHEN previous_valid_until <= now() THEN previous_encrypted END AS retired_encrypted
FROM pm.service_key
WHERE key_id = $1
"""

# At most one write a minute per key, however many requests it signs.
TOUCH_KEY = """
UPDATE pm.service_key
SET last_used_at = now()
WHERE key_id = $1
  AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
"""
