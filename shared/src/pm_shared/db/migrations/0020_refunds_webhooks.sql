-- Refunds and webhooks (B17, docs/refunds.md, docs/webhooks.md).

-- A REFUND intent names the intent it gives money back for. The refunds of one original never add
-- up to more than it: intake locks the original's row, adds up its refunds that have not failed,
-- and inserts the new one in that transaction (pm_shared.intents.refunds).
ALTER TABLE pm.intent ADD COLUMN original_intent_id uuid;
CREATE INDEX intent_original_idx ON pm.intent (original_intent_id) WHERE original_intent_id IS NOT NULL;

-- The wallet history shows a refund beside the charge (or withdrawal) it gives back.
ALTER TABLE pm.tx_history ADD COLUMN original_intent_id uuid;

-- A refund moves money inside the ledger only: from the merchant's account (a merchant's refund of
-- its charge), or from the PSP's clearing account (a payout the receiving bank sent back).
INSERT INTO pm.payment_route (operation_type, channel, steps) VALUES
    ('REFUND', 'INTERNAL', ARRAY['validate', 'price', 'authorize', 'settle'])
ON CONFLICT DO NOTHING;

-- The refunds PSPs notify: a payout returned to us. Exactly one credit per (psp, refund id): the
-- REFUND intent's Idempotency-Key is `<psp>-refund:<refund id>` under this key, which, like the front
-- door's, never signs a request.
INSERT INTO pm.service_key (key_id, secret_encrypted, permissions, status, description, deactivated_at)
VALUES (
    'pk_000000000000000000000001',
    '\x'::bytea,
    '{"operations": ["REFUND"], "owners": null, "admin": false}',
    'inactive',
    'PSP refund notifications (a payout sent back); never signs',
    now()
)
ON CONFLICT (key_id) DO NOTHING;
ALTER TABLE pm.service_key ADD CONSTRAINT service_key_psp_refunds_never_signs
    CHECK (key_id <> 'pk_000000000000000000000001' OR status = 'inactive');

CREATE TABLE pm.psp_refund (
    psp                 text NOT NULL,
    refund_id           text NOT NULL,          -- the PSP's id of the refund
    psp_reference       text,                   -- the PSP's id of the payout sent back
    amount              bigint CHECK (amount > 0),
    currency            char(3),
    -- RECEIVED: notified, not confirmed yet; CREDITED: confirmed, its REFUND intent made;
    -- UNMATCHED: confirmed, but no settled payout of ours to refund (an alert, never a credit);
    -- REJECTED: the PSP says there is no such refund, or that it did not complete.
    status              text NOT NULL DEFAULT 'RECEIVED'
                        CHECK (status IN ('RECEIVED', 'CREDITED', 'UNMATCHED', 'REJECTED')),
    original_intent_id  uuid,
    refund_intent_id    uuid,
    detail              text,
    notifications       integer NOT NULL DEFAULT 1,
    received_at         timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (psp, refund_id)
);

-- Outbound merchant webhooks (Standard Webhooks 1.0).
CREATE TABLE pm.webhook_endpoint (
    endpoint_id       text PRIMARY KEY,          -- ep_<24 hex>
    merchant_id       text NOT NULL REFERENCES pm.merchant (merchant_id),
    url               text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    event_types       text[] NOT NULL CHECK (cardinality(event_types) >= 1),
    status            text NOT NULL DEFAULT 'ENABLED' CHECK (status IN ('ENABLED', 'DISABLED')),
    disabled_reason   text,
    -- The signing secret's raw bytes (shown once as whsec_<base64>), encrypted as service key secrets
    -- are (pm_shared.keys.crypto, key_id = endpoint_id). During a rotation the previous one signs too,
    -- until previous_until.
    secret_encrypted           bytea NOT NULL,
    previous_secret_encrypted  bytea,
    previous_until             timestamptz,
    failing_since     timestamptz,               -- the first failure since the last success
    created_by        text NOT NULL,
    idempotency_key   text NOT NULL,
    request_hash      bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (created_by, idempotency_key)
);
CREATE INDEX webhook_endpoint_merchant_idx ON pm.webhook_endpoint (merchant_id);

-- One event for one endpoint, delivered until it succeeds, runs out of attempts, or its endpoint is
-- disabled. `webhook_id` is the `webhook-id` header: the same on every attempt and on a replay.
CREATE TABLE pm.webhook_delivery (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id        text NOT NULL,             -- msg_<...>, one per event
    endpoint_id       text NOT NULL REFERENCES pm.webhook_endpoint (endpoint_id),
    merchant_id       text NOT NULL,
    event_type        text NOT NULL,
    intent_id         uuid,
    payload           bytea NOT NULL,            -- the exact body signed and sent, every time
    -- PENDING: an attempt is due at next_attempt_at; DELIVERED: a 2xx; FAILED: out of attempts, or
    -- refused for good (410, endpoint disabled).
    status            text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    claimed_until     timestamptz,               -- a sender is attempting it (a lease: a killed one's lapses)
    replay_by         text,                      -- an operator asked for it again: the next attempt is a replay
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, webhook_id)
);
CREATE INDEX webhook_delivery_due_idx ON pm.webhook_delivery (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_delivery_endpoint_idx ON pm.webhook_delivery (endpoint_id, id DESC);
CREATE INDEX webhook_delivery_merchant_idx ON pm.webhook_delivery (merchant_id, id DESC);

-- Every attempt: when, how (the first, an automatic retry, or a replay an operator asked for), what
-- came back and how long it took.
CREATE TABLE pm.webhook_attempt (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id       bigint NOT NULL REFERENCES pm.webhook_delivery (id),
    attempt           integer NOT NULL,
    trigger           text NOT NULL CHECK (trigger IN ('initial', 'retry', 'replay')),
    at                timestamptz NOT NULL,
    status_code       integer,
    error             text,                      -- no answer: refused address, timeout, connection error
    latency_ms        integer NOT NULL,
    response_excerpt  text,                      -- the first 1,000 characters of the answer
    actor             text                       -- who asked for a replay
);
CREATE INDEX webhook_attempt_delivery_idx ON pm.webhook_attempt (delivery_id, id);

-- Replays an operator asked for, and endpoint changes: who, when, what.
CREATE TABLE pm.webhook_event_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id   text NOT NULL REFERENCES pm.webhook_endpoint (endpoint_id),
    delivery_id   bigint REFERENCES pm.webhook_delivery (id),
    action        text NOT NULL,                 -- created, rotated, disabled, enabled, replayed
    actor         text NOT NULL,
    detail        text,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_event_log_endpoint_idx ON pm.webhook_event_log (endpoint_id, id);
