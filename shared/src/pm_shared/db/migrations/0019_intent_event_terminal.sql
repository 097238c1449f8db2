-- Reconciliation reports (pm_shared.reconciliation.reports) read when intents first reached SETTLED or
-- FAILED within a day or week: without this index each report reads the whole timeline (measured on 1M
-- events: a day 0.37 s → 0.07 s).
CREATE INDEX intent_event_terminal_idx ON pm.intent_event (to_state, at, intent_id)
    WHERE to_state IN ('SETTLED', 'FAILED');
