-- Reconciliation (docs/reconciliation.md): the reconciler's alerts, sweeps, repairs and reports.

-- An alert is one row per (kind, subject, period): what failed, about what (an intent, a transfer, an
-- account, a ledger, a PSP reference) and for which period ('continuous' for per-intent checks, the
-- day a sweep covered). A failure seen again reopens the row and counts it, never a second row. The
-- orchestrator's dead-letter alerts (migration 0009) keep their (kind, stream, entry_id) key and no
-- subject.
ALTER TABLE pm.reconciliation_alert
    ADD COLUMN subject          text,
    ADD COLUMN period           text,
    ADD COLUMN status           text NOT NULL DEFAULT 'OPEN'
        CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')),
    ADD COLUMN occurrences      integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    ADD COLUMN last_seen_at     timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_run         text,          -- the check run that saw it last: one run counts it once
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_by  text,
    ADD COLUMN resolved_by      text,          -- 'reconciler' when a later check passed, else the operator
    ADD COLUMN note             text;

UPDATE pm.reconciliation_alert SET status = 'RESOLVED', resolved_by = 'operator' WHERE resolved_at IS NOT NULL;

ALTER TABLE pm.reconciliation_alert
    ADD CONSTRAINT reconciliation_alert_resolved CHECK ((status = 'RESOLVED') = (resolved_at IS NOT NULL)),
    ADD CONSTRAINT reconciliation_alert_keyed CHECK ((subject IS NULL) = (period IS NULL));

CREATE UNIQUE INDEX reconciliation_alert_subject_key
    ON pm.reconciliation_alert (kind, subject, period) WHERE subject IS NOT NULL;
CREATE INDEX reconciliation_alert_status_idx ON pm.reconciliation_alert (status, last_seen_at DESC);
-- The continuous check resolves an intent's alerts when the intent checks clean again.
CREATE INDEX reconciliation_alert_intent_idx ON pm.reconciliation_alert (intent_id) WHERE status <> 'RESOLVED';

-- Who did what to an alert, in order: opened, seen again, reopened, acknowledged, resolved, repaired.
CREATE TABLE pm.reconciliation_alert_action (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES pm.reconciliation_alert (id),
    action    text NOT NULL,
    actor     text NOT NULL,
    note      text,
    detail    jsonb NOT NULL DEFAULT '{}',
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_alert_action_alert_idx ON pm.reconciliation_alert_action (alert_id, id);

-- One sweep of one period: exactly one replica holds it at a time (owner + lease_until, taken over
-- only once the lease ran out), and its checkpoint is written in the transaction that writes the
-- alerts of the page before it, so a sweep killed mid-way resumes where it stopped and never reports
-- a page twice.
CREATE TABLE pm.reconciliation_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sweep        text NOT NULL,
    period       text NOT NULL,
    status       text NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'DONE')),
    owner        text NOT NULL,
    lease_until  timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 1,
    checkpoint   jsonb NOT NULL DEFAULT '{}',
    stats        jsonb NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    UNIQUE (sweep, period),
    CHECK ((status = 'DONE') = (finished_at IS NOT NULL))
);

-- A repair: the correcting transfers the reconciler proposes for an alert, applied through the
-- ledger-writer only when an operator approves them. Their ids derive from the alert, so applying
-- twice sends the same transfers (the ledger answers EXISTS).
CREATE TABLE pm.reconciliation_repair (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     bigint NOT NULL UNIQUE REFERENCES pm.reconciliation_alert (id),
    intent_id    uuid,
    transfers    jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'PROPOSED' CHECK (status IN ('PROPOSED', 'APPLYING', 'APPLIED')),
    proposed_at  timestamptz NOT NULL DEFAULT now(),
    applied_by   text,
    applied_at   timestamptz,
    CHECK ((status = 'APPLIED') = (applied_at IS NOT NULL))
);

-- The sweeps read terminal intents by when they last changed.
CREATE INDEX intent_updated_idx ON pm.intent (updated_at, id) WHERE state IN ('SETTLED', 'FAILED');
