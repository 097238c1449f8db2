-- Which ledger account belongs to whom (DESIGN §3): (owner kind, owner id, currency, code) → the
-- u128 ledger account id. The id is a deterministic hash of the same tuple (pm_shared.ledger.ids), so
-- this table is not needed to *find* an account; it exists so PM can list what it has opened, so the
-- verifier (`pm ledger verify`) knows what must exist on the ledger, and so an account id seen on the
-- ledger can be traced back to its owner. Written by pm_shared.ledger.accounts.open_accounts after
-- the ledger accepted the account (a crash in between is repaired by the idempotent retry).
CREATE TABLE pm.tb_account_map (
    -- 'user', 'merchant', 'operator', …; with owner_id it names the holder.
    owner_kind text NOT NULL CHECK (owner_kind <> ''),
    owner_id   text NOT NULL CHECK (owner_id <> ''),
    -- ISO 4217 alphabetic code; one ledger per currency.
    currency   char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The chart-of-accounts code (pm_shared.ledger.chart.Code); a u16 on the ledger.
    code       integer NOT NULL CHECK (code BETWEEN 1 AND 65535),
    -- The u128 ledger account id as `uuid`: 16 bytes, exact, and compared bytewise, i.e. as an
    -- unsigned big-endian integer — the same encoding as ledger.accounts.id in migration 0002, so the
    -- embedded ledger's accounts can be joined directly. Never the nil or all-ones uuid (0 and
    -- 2^128-1 are reserved by TigerBeetle).
    account_id uuid NOT NULL
        CHECK (account_id <> '00000000-0000-0000-0000-000000000000'
           AND account_id <> 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
    -- The ledger number (ISO 4217 numeric code) and account flags the account was opened with, as
    -- the chart said at the time; the verifier compares them with the chart and the ledger.
    ledger     bigint NOT NULL CHECK (ledger BETWEEN 1 AND 4294967295),
    flags      integer NOT NULL CHECK (flags BETWEEN 0 AND 65535),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_kind, owner_id, currency, code),
    -- One account has one owner: a second key hashing to the same id would be a collision (or a
    -- bug), and must fail loudly instead of silently sharing money between two owners.
    CONSTRAINT tb_account_map_account_id_key UNIQUE (account_id)
);

COMMENT ON TABLE pm.tb_account_map IS
    'Ledger accounts PM has opened: (owner_kind, owner_id, currency, code) -> u128 account id (as uuid).';
