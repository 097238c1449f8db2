"""Every SQL statement of the transactional outbox (`pm.outbox`, migration 0001), by name."""

from __future__ import annotations

# One statement for the whole batch. A message id already present (a retried transaction) is
# skipped; RETURNING names the rows this statement added.
INSERT_MESSAGES = """
INSERT INTO pm.outbox (stream, intent_id, message_id, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""

# After the publish that followed the commit. A row the relay published meanwhile keeps its mark.
MARK_PUBLISHED_BY_MESSAGE_ID = """
UPDATE pm.outbox SET published_at = now(), attempts = attempts + 1
WHERE message_id = ANY($1::text[]) AND published_at IS NULL
"""

# The relay's claim: the oldest unpublished rows past the grace period, locked for this transaction.
# SKIP LOCKED lets several relays split the work instead of publishing the same row or waiting.
# Younger rows are most likely being published by their writer right now.
CLAIM_UNPUBLISHED = """
SELECT id, stream, intent_id, message_id, payload FROM pm.outbox
WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $1)
ORDER BY id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""

MARK_PUBLISHED_BY_ID = """
UPDATE pm.outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])
"""

RECORD_FAILURE = """
UPDATE pm.outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1::bigint[])
"""

# Age of the oldest unpublished row: one probe of the partial index outbox_unpublished_idx (ids
# grow with time). clock_timestamp(), not now(): now() is frozen at the start of the transaction.
OLDEST_UNPUBLISHED_AGE_S = """
SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM pm.outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT 1
"""

# Published rows past the retention period, oldest first, a batch at a time. Walking the primary key
# from its start meets the oldest rows first; unpublished rows are never deleted.
PRUNE_PUBLISHED = """
DELETE FROM pm.outbox
WHERE id IN (
    SELECT id FROM pm.outbox
    WHERE published_at < now() - make_interval(secs => $1)
    ORDER BY id
    LIMIT $2
)
"""
