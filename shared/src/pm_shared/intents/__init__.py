"""Intents as PostgreSQL records them (`pm.intent`, `pm.intent_event`)."""
