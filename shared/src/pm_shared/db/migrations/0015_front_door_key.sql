-- The front door's key: end users' intents (`POST /v1/me/intents`) are kept under it, so their
-- Idempotency-Keys live in pm.intent's (key_id, idempotency_key) like every other caller's (the
-- gateway stores them as `me:<user>:<key>`, one namespace per user). It never signs a request: its
-- secret is empty (nothing decrypts to it) and the database keeps it inactive.
INSERT INTO pm.service_key (key_id, secret_encrypted, permissions, status, description, deactivated_at)
VALUES (
    'pk_000000000000000000000000',
    '\x'::bytea,
    '{"operations": ["P2P", "PROMPTPAY_WITHDRAWAL"], "owners": null, "admin": false}',
    'inactive',
    'end users through the front door (/v1/me/intents); never signs',
    now()
)
ON CONFLICT (key_id) DO NOTHING;

ALTER TABLE pm.service_key ADD CONSTRAINT service_key_front_door_never_signs
    CHECK (key_id <> 'pk_000000000000000000000000' OR status = 'inactive');
