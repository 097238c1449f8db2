-- Payment requests (docs/api.md, "Payment requests"): a merchant asks a user to pay through one of its
-- mini-apps; the user confirms (which makes the MINIAPP_CHARGE intent, exactly once: its id is minted
-- when the request is confirmed and kept here, so a confirmation repeated after a crash makes that
-- same intent) or declines; an OPEN request past `expires_at` is EXPIRED and can no longer be confirmed.
CREATE TABLE pm.payment_request (
    id               uuid PRIMARY KEY,
    merchant_id      text NOT NULL REFERENCES pm.merchant (merchant_id),
    miniapp_id       text NOT NULL REFERENCES pm.miniapp (miniapp_id),
    user_id          text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         text NOT NULL,
    description      text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'OPEN'
                     CHECK (status IN ('OPEN', 'CONFIRMED', 'DECLINED', 'EXPIRED')),
    -- The merchant key that asked, with its Idempotency-Key: the same pair is the same request.
    key_id           text NOT NULL,
    idempotency_key  text NOT NULL,
    request_hash     bytea NOT NULL,
    intent_id        uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    decided_at       timestamptz,
    UNIQUE (key_id, idempotency_key),
    CHECK ((status = 'CONFIRMED') = (intent_id IS NOT NULL))
);
CREATE INDEX payment_request_by_user ON pm.payment_request (user_id, created_at DESC);
