"""SQL of the orchestrator (schema `pm`). Parameters are positional."""

from __future__ import annotations

# The guarded move: the UPDATE only matches while the intent is still in the expected state, and the
# timeline entry is written only if it did. Returns true when the move happened.
MOVE_INTENT = """
WITH moved AS (
    UPDATE pm.intent
    SET state = $3, failure_code = $4, updated_at = now()
    WHERE id = $1::uuid AND state = $2
    RETURNING id
), event AS (
    INSERT INTO pm.intent_event (intent_id, from_state, to_state, reason, cause_message_id)
    SELECT id, $2, $3, $5, $6 FROM moved
)
SELECT EXISTS (SELECT 1 FROM moved)
"""
