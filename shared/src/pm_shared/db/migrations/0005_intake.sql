-- Service keys, intents and their timeline, and the wallet history projection (DESIGN §5, §8).

-- A service key signs every API request (DESIGN §8). The secret is stored encrypted (AES-256-GCM
-- under PM_KEY_ENCRYPTION_KEY, see pm_shared.keys.crypto) because the gateway must recompute the
-- HMAC, so a hash would not do; a database dump alone never yields a usable secret.
CREATE TABLE pm.service_key (
    key_id                text PRIMARY KEY CHECK (key_id ~ '^pk_[0-9a-f]{24}$'),
    secret_encrypted      bytea NOT NULL,
    -- After a rotation the previous secret stays valid until previous_valid_until (the grace period),
    -- so clients can be redeployed with the new one without a window of refused requests.
    previous_encrypted    bytea,
    previous_valid_until  timestamptz,
    -- {"operations": ["P2P", ...], "owners": ["u-1", ...] or null for any owner, "admin": false}
    permissions           jsonb NOT NULL,
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    description           text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL DEFAULT now(),
    rotated_at            timestamptz,
    deactivated_at        timestamptz,
    last_used_at          timestamptz,
    CHECK ((previous_encrypted IS NULL) = (previous_valid_until IS NULL))
);

-- One row per accepted intent. The gateway writes it in CREATED (the 202 is sent only once the row
-- and its outbox message are committed); every later transition is the orchestrator's.
CREATE TABLE pm.intent (
    id                   uuid PRIMARY KEY,  -- UUIDv7, minted by the gateway
    key_id               text NOT NULL REFERENCES pm.service_key (key_id),
    idempotency_key      text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- sha256 of the request as decoded (canonical JSON): the same key with another body is a 409.
    request_hash         bytea NOT NULL,
    type                 text NOT NULL,
    state                text NOT NULL
        CHECK (state IN ('CREATED', 'VALIDATED', 'AUTHORIZED', 'SETTLED', 'FAILED')),
    failure_code         text,
    amount               bigint NOT NULL CHECK (amount > 0),
    currency             char(3) NOT NULL,
    source               jsonb NOT NULL,
    target               jsonb NOT NULL,
    from_name            text,
    to_name              text,
    comment              text,
    requires_monitoring  boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    fees                 jsonb NOT NULL DEFAULT '[]',
    legs                 jsonb NOT NULL DEFAULT '[]',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'FAILED') = (failure_code IS NOT NULL)),
    UNIQUE (key_id, idempotency_key)
);

-- Listing a key's intents, newest first, by keyset pagination on (created_at, id).
CREATE INDEX intent_key_created_idx ON pm.intent (key_id, created_at DESC, id DESC);
CREATE INDEX intent_created_idx ON pm.intent (created_at DESC, id DESC);
-- The orchestrator's startup reconciler resumes every intent that is not terminal.
CREATE INDEX intent_open_idx ON pm.intent (state) WHERE state NOT IN ('SETTLED', 'FAILED');

-- Every state change of an intent, in order: its timeline.
CREATE TABLE pm.intent_event (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    intent_id         uuid NOT NULL REFERENCES pm.intent (id),
    from_state        text,
    to_state          text NOT NULL,
    reason            text,
    -- The message that caused the change (its idempotency key), when one did.
    cause_message_id  text,
    at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intent_event_intent_idx ON pm.intent_event (intent_id, id);

-- A wallet's history as its owner sees it, written by the orchestrator when an intent settles (one
-- row per party and direction; the unique key makes a replayed settlement harmless).
CREATE TABLE pm.tx_history (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_kind           text NOT NULL,
    owner_id             text NOT NULL,
    intent_id            uuid NOT NULL REFERENCES pm.intent (id),
    type                 text NOT NULL,
    direction            text NOT NULL CHECK (direction IN ('in', 'out')),
    amount               bigint NOT NULL CHECK (amount > 0),
    currency             char(3) NOT NULL,
    fee                  bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    counterparty_name    text,
    comment              text,
    requires_monitoring  boolean NOT NULL DEFAULT false,
    at                   timestamptz NOT NULL,
    UNIQUE (owner_kind, owner_id, intent_id, direction)
);
CREATE INDEX tx_history_owner_idx ON pm.tx_history (owner_kind, owner_id, at DESC, id DESC);
