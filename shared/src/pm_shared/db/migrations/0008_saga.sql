-- What the orchestrator's saga keeps on an intent, and the settled-balance projection (DESIGN §5, §7).

-- The route an intent follows is fixed when it is validated (a later change of pm.payment_route does
-- not move intents already under way), and `step` names the step whose answer it awaits (the ledger's
-- or a PSP's): a result for another step is stale and changes nothing.
ALTER TABLE pm.intent
    ADD COLUMN channel text,
    ADD COLUMN route   text[],
    ADD COLUMN step    text;

-- The intent's reader, `pm intents show`, and the stuck-intent sweep look intents up by state and age.
CREATE INDEX intent_open_updated_idx ON pm.intent (updated_at) WHERE state NOT IN ('SETTLED', 'FAILED');

-- Posted totals per ledger account as the settled intents moved them, updated in the transaction that
-- settles each intent (so exactly once per intent). The ledger stays the source of truth; the
-- reconciler compares the two.
CREATE TABLE pm.account_balance (
    account_id      uuid PRIMARY KEY,  -- the u128 ledger account id, as in pm.tb_account_map
    owner_kind      text NOT NULL,
    owner_id        text NOT NULL,
    currency        char(3) NOT NULL,
    code            integer NOT NULL,
    debits_posted   bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted  bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    last_intent_id  uuid,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_kind, owner_id, currency, code)
);
