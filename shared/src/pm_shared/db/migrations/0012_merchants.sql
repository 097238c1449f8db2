-- Merchants (docs/api.md, "Merchants"): a merchant is a service key with `"merchant": <id>` in its
-- permissions, this row, and one ledger account (code 2) per currency. Onboarding writes the key and
-- the row in one transaction, keyed by the admin key and its Idempotency-Key, so a retry after a
-- crash anywhere finds this row and finishes the same merchant (its accounts have deterministic ids).
CREATE TABLE pm.merchant (
    merchant_id      text PRIMARY KEY CHECK (merchant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200 AND strpos(name, chr(10)) = 0),
    status           text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    currencies       text[] NOT NULL CHECK (cardinality(currencies) BETWEEN 1 AND 3),
    key_id           text NOT NULL UNIQUE REFERENCES pm.service_key (key_id),
    -- Who onboarded it and with which Idempotency-Key: the same pair is the same merchant.
    created_by       text NOT NULL,
    idempotency_key  text NOT NULL,
    request_hash     bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deactivated_at   timestamptz,
    UNIQUE (created_by, idempotency_key)
);

-- Every change of a merchant, by whom: the audit trail `pm merchants show` and the admin API read.
CREATE TABLE pm.merchant_event (
    id           bigserial PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES pm.merchant (merchant_id),
    at           timestamptz NOT NULL DEFAULT now(),
    action       text NOT NULL CHECK (action IN ('created', 'deactivated', 'reactivated', 'secret_rotated')),
    actor        text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX merchant_event_by_merchant ON pm.merchant_event (merchant_id, id);

-- A merchant key names its merchant; the shape check of 0007 learns the optional field.
ALTER TABLE pm.service_key DROP CONSTRAINT service_key_permissions_shape;
ALTER TABLE pm.service_key ADD CONSTRAINT service_key_permissions_shape CHECK (
    coalesce(
        jsonb_typeof(permissions -> 'operations') = 'array'
        AND jsonb_typeof(permissions -> 'admin') = 'boolean'
        AND (NOT permissions ? 'owners' OR jsonb_typeof(permissions -> 'owners') IN ('array', 'null'))
        AND (NOT permissions ? 'merchant' OR jsonb_typeof(permissions -> 'merchant') IN ('string', 'null')),
        false
    )
);
