-- Currency exchange (docs/fx.md). Rates an admin sets, every one kept: a quote uses the newest of its
-- pair already valid. `rate` is QUOTE per one BASE of `pair`, exact as written.
CREATE TABLE pm.fx_rate (
    id          bigserial PRIMARY KEY,
    pair        text NOT NULL CHECK (pair ~ '^(THB|USD|RUB)/(THB|USD|RUB)$' AND split_part(pair, '/', 1) <> split_part(pair, '/', 2)),
    rate        numeric NOT NULL CHECK (rate > 0),
    spread_bps  integer NOT NULL CHECK (spread_bps BETWEEN 0 AND 2000),
    source      text NOT NULL DEFAULT '',
    valid_from  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fx_rate_by_pair ON pm.fx_rate (pair, valid_from DESC, id DESC);

-- A quote: a price locked until `expires_at` for one exchange by its owner. The FX_EXCHANGE intent that
-- uses it takes the quote's id as its own, so pm.intent's primary key makes "used at most once" hold.
CREATE TABLE pm.fx_quote (
    id             uuid PRIMARY KEY,
    owner_id       text NOT NULL,
    key_id         text NOT NULL,
    rate_id        bigint NOT NULL REFERENCES pm.fx_rate (id),
    sell_currency  text NOT NULL,
    buy_currency   text NOT NULL CHECK (buy_currency <> sell_currency),
    sell_amount    bigint NOT NULL CHECK (sell_amount > 0),
    principal      bigint NOT NULL CHECK (principal > 0),
    fee            bigint NOT NULL CHECK (fee >= 0),
    buy_amount     bigint NOT NULL CHECK (buy_amount > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    CHECK (sell_amount = principal + fee)
);

-- What an FX_EXCHANGE moves besides its amount (copied from its quote at intake, so the saga reads
-- one row): {"quoteId", "buyCurrency", "buyAmount", "principal", "spread", "rate", "pair", "spreadBps"}.
ALTER TABLE pm.intent ADD COLUMN exchange jsonb;

-- Inside the ledger (two of them): no PSP step.
INSERT INTO pm.payment_route (operation_type, channel, steps) VALUES
    ('FX_EXCHANGE', 'INTERNAL', ARRAY['validate', 'price', 'reserve_limits', 'authorize', 'settle']);
