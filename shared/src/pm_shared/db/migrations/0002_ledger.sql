-- The embedded ledger engine (DESIGN §6): TigerBeetle 0.17.9 semantics on PostgreSQL.
-- Only the ledger-writer writes these tables, one request per transaction under an advisory lock.
--
-- Types: u128 ids are `uuid` (16 bytes, compared bytewise = as unsigned big-endian integers);
-- u128 amounts and balances are numeric(39,0) (never bigint); u64 user_data is numeric(20,0);
-- u32 fields are bigint; u16 fields integer; nanosecond timestamps (< 2^63) bigint.
CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE ledger.accounts (
    id              uuid PRIMARY KEY,
    debits_pending  numeric(39,0) NOT NULL,
    debits_posted   numeric(39,0) NOT NULL,
    credits_pending numeric(39,0) NOT NULL,
    credits_posted  numeric(39,0) NOT NULL,
    user_data_128   uuid NOT NULL,
    user_data_64    numeric(20,0) NOT NULL,
    user_data_32    bigint NOT NULL,
    ledger          bigint NOT NULL,
    code            integer NOT NULL,
    -- All 16 bits as stored, including `linked`; only `closed` ever changes (§2.3).
    flags           integer NOT NULL,
    timestamp       bigint NOT NULL UNIQUE
);

-- query_accounts filters (§6.4); 0 means "no filter", so zero values are not indexed.
CREATE INDEX accounts_user_data_128_idx ON ledger.accounts (user_data_128, timestamp)
    WHERE user_data_128 <> '00000000-0000-0000-0000-000000000000';
CREATE INDEX accounts_ledger_code_idx ON ledger.accounts (ledger, code, timestamp);

CREATE TABLE ledger.transfers (
    id                uuid PRIMARY KEY,
    -- Post/void rows carry the pending transfer's accounts, ledger and code (§4.5).
    debit_account_id  uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount            numeric(39,0) NOT NULL,
    pending_id        uuid NOT NULL,
    user_data_128     uuid NOT NULL,
    user_data_64      numeric(20,0) NOT NULL,
    user_data_32      bigint NOT NULL,
    timeout           bigint NOT NULL,
    ledger            bigint NOT NULL,
    code              integer NOT NULL,
    flags             integer NOT NULL,
    timestamp         bigint NOT NULL UNIQUE,
    -- Pending transfers only: 1 pending, 2 posted, 3 voided, 4 expired (§4.9); NULL otherwise.
    pending_status    smallint,
    -- Pending transfers with a timeout only: timestamp + timeout·10^9.
    expires_at        bigint,
    -- Balances after this transfer (§6.3), per side, stored only when that side's account has
    -- flags.history (immutable), so get_account_balances never meets a NULL for a history account.
    dr_debits_pending  numeric(39,0),
    dr_debits_posted   numeric(39,0),
    dr_credits_pending numeric(39,0),
    dr_credits_posted  numeric(39,0),
    cr_debits_pending  numeric(39,0),
    cr_debits_posted   numeric(39,0),
    cr_credits_pending numeric(39,0),
    cr_credits_posted  numeric(39,0)
);

-- get_account_transfers / get_account_balances (§6.2, §6.3): by account, in timestamp order.
CREATE INDEX transfers_debit_idx ON ledger.transfers (debit_account_id, timestamp);
CREATE INDEX transfers_credit_idx ON ledger.transfers (credit_account_id, timestamp);
-- query_transfers (§6.4): user_data_128 carries the payment id (DESIGN §8.2 style lookups).
CREATE INDEX transfers_user_data_128_idx ON ledger.transfers (user_data_128, timestamp)
    WHERE user_data_128 <> '00000000-0000-0000-0000-000000000000';
-- Expiry pulses (§4.9): due reservations in (expires_at, timestamp) order.
CREATE INDEX transfers_expiry_idx ON ledger.transfers (expires_at, timestamp)
    WHERE pending_status = 1 AND expires_at IS NOT NULL;

-- Transfer ids burned by a transient failure (§4.6): later events with the id get id_already_failed.
CREATE TABLE ledger.failed_transfers (
    id uuid PRIMARY KEY
);

-- The engine-wide timestamp counter shared by accounts, transfers and expiry pulses (§3).
CREATE TABLE ledger.engine_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_timestamp bigint NOT NULL
);
INSERT INTO ledger.engine_state (singleton, last_timestamp) VALUES (true, 0);
