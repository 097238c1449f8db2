"""SQL reading intents (schema `pm`, migration 0005). Parameters are positional."""

from __future__ import annotations

INTENT_COLUMNS = """
    id, key_id, request_hash, type, state, failure_code, amount, currency, source, target, from_name,
    to_name, comment, requires_monitoring, metadata, fees, legs, created_at, updated_at, payment"""

SELECT_INTENT = f"SELECT {INTENT_COLUMNS} FROM pm.intent WHERE id = $1"

SELECT_TIMELINE = """
SELECT at, to_state, from_state, reason FROM pm.intent_event WHERE intent_id = $1 ORDER BY id
"""
