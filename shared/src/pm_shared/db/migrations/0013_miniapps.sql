-- Mini-apps (docs/api.md, "Mini-apps"): a merchant's app inside the wallet, the catalog an admin keeps.
-- `operations` are the intent types it may be used for; `max_charge` caps one charge per currency
-- (minor units; a currency it does not name is not capped).
CREATE TABLE pm.miniapp (
    miniapp_id      text PRIMARY KEY CHECK (miniapp_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    merchant_id     text NOT NULL REFERENCES pm.merchant (merchant_id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200 AND strpos(name, chr(10)) = 0),
    status          text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    operations      text[] NOT NULL CHECK (
        cardinality(operations) >= 1 AND operations <@ ARRAY['MINIAPP_CHARGE', 'MINIAPP_CREDIT']
    ),
    max_charge      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(max_charge) = 'object'),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deactivated_at  timestamptz
);
CREATE INDEX miniapp_by_merchant ON pm.miniapp (merchant_id, miniapp_id);

-- The mini-app a MINIAPP_* intent was made through.
ALTER TABLE pm.intent ADD COLUMN miniapp_id text;

-- Money between a user's wallet and a merchant's account, inside the ledger: no PSP step.
INSERT INTO pm.payment_route (operation_type, channel, steps) VALUES
    ('MINIAPP_CHARGE', 'INTERNAL', ARRAY['validate', 'price', 'reserve_limits', 'authorize', 'settle']),
    ('MINIAPP_CREDIT', 'INTERNAL', ARRAY['validate', 'price', 'authorize', 'settle']);
