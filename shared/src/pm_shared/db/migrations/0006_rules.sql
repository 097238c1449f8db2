-- Fee rules, limit rules and payment routes (DESIGN §7; roadmap B3, B4, B9). Rules are versioned:
-- a change is a new row with the next version, so the version stamped on an intent always names
-- the exact rule that priced it.

CREATE TABLE pm.fee_rule (
    rule_id          text NOT NULL CHECK (rule_id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    version          integer NOT NULL CHECK (version >= 1),
    -- Only the rules of an intent's type are evaluated for it.
    operation_type   text NOT NULL,
    -- CEL over `intent` (type, amount, currency, source/target kind and id, requiresMonitoring,
    -- metadata): `condition` must yield a bool, `amount` an int in minor units of the intent's currency.
    condition        text NOT NULL DEFAULT 'true',
    amount           text NOT NULL,
    timing           text NOT NULL CHECK (timing IN ('PRE', 'POST')),
    -- Who pays: the intent's source or its target (the fee is taken from that side's wallet).
    payer            text NOT NULL DEFAULT 'source' CHECK (payer IN ('source', 'target')),
    -- The operator account (chart code) the fee is credited to.
    fee_account_code integer NOT NULL DEFAULT 10 CHECK (fee_account_code BETWEEN 1 AND 65535),
    -- Lower runs first; the breakdown lists fees in this order.
    priority         integer NOT NULL DEFAULT 100,
    -- An evaluation above this fails the intent (FEE_EXCESSIVE) instead of charging it.
    max_fee          bigint NOT NULL CHECK (max_fee > 0),
    active_from      timestamptz NOT NULL DEFAULT now(),
    active_until     timestamptz,
    -- 'retired' ends a rule for good (its versions stay, for the intents they priced).
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    description      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, version),
    CHECK (active_until IS NULL OR active_until > active_from)
);
CREATE INDEX fee_rule_operation_idx ON pm.fee_rule (operation_type, priority);

CREATE TABLE pm.limit_rule (
    rule_id          text NOT NULL CHECK (rule_id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    version          integer NOT NULL CHECK (version >= 1),
    -- Whom it binds: one user ('user', id) or every user of a tier ('tier', name).
    subject_kind     text NOT NULL CHECK (subject_kind IN ('user', 'tier')),
    subject          text NOT NULL,
    operation_type   text NOT NULL,
    currency         char(3) NOT NULL,
    -- Calendar day or month in Asia/Bangkok time.
    period           text NOT NULL CHECK (period IN ('day', 'month')),
    max_amount       bigint CHECK (max_amount > 0),
    max_count        integer CHECK (max_count > 0),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, version),
    CHECK (max_amount IS NOT NULL OR max_count IS NOT NULL)
);
CREATE INDEX limit_rule_subject_idx ON pm.limit_rule (subject_kind, subject, operation_type);

-- Operation type + channel -> the ordered steps of the saga (the orchestrator's StepRegistry names).
CREATE TABLE pm.payment_route (
    operation_type  text NOT NULL,
    channel         text NOT NULL,
    steps           text[] NOT NULL CHECK (cardinality(steps) >= 1),
    enabled         boolean NOT NULL DEFAULT true,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operation_type, channel)
);

INSERT INTO pm.payment_route (operation_type, channel, steps) VALUES
    ('P2P', 'INTERNAL_P2P', ARRAY['validate', 'price', 'reserve_limits', 'authorize', 'settle']),
    ('ADJUSTMENT', 'INTERNAL', ARRAY['validate', 'authorize', 'settle']),
    ('PROMPTPAY_WITHDRAWAL', 'IPPS', ARRAY['validate', 'price', 'reserve_limits', 'authorize', 'psp_payout', 'settle']),
    ('SBP_TOPUP', 'QP', ARRAY['validate', 'psp_collect', 'settle']);
