-- Closing a deactivated merchant's ledger accounts, and reopening them (docs/api.md, "Merchants";
-- TigerBeetle's close-account recipe). `accounts_state` walks OPEN → CLOSING → CLOSED → REOPENING →
-- OPEN; `closings` counts the closes, and names each close's transfers (their ids are derived from
-- it, so a repeated close or reopen sends the same transfers and the ledger answers EXISTS).
ALTER TABLE pm.merchant
    ADD COLUMN accounts_state text NOT NULL DEFAULT 'OPEN'
        CHECK (accounts_state IN ('OPEN', 'CLOSING', 'CLOSED', 'REOPENING')),
    ADD COLUMN closings integer NOT NULL DEFAULT 0 CHECK (closings >= 0),
    -- An active merchant's accounts are open: reactivation reopens them first.
    ADD CONSTRAINT merchant_active_accounts_open CHECK (status = 'INACTIVE' OR accounts_state = 'OPEN');

ALTER TABLE pm.merchant_event DROP CONSTRAINT merchant_event_action_check;
ALTER TABLE pm.merchant_event ADD CONSTRAINT merchant_event_action_check CHECK (
    action IN ('created', 'deactivated', 'reactivated', 'secret_rotated', 'accounts_closed', 'accounts_reopened')
);
