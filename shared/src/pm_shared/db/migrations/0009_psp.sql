-- What the PSP adapters know about every attempt to move money through a PSP, and the alerts raised
-- when PM cannot tell what a PSP did (DESIGN §4, DLQ meaning; psp-protocols §4).

-- One row per attempt (one idempotency key), written BEFORE the PSP is called: the row and its phase
-- are what proves whether anything reached the PSP. A job found in a jobs DLQ may be voided and its
-- intent failed only while its row is missing or still in 'recorded' / 'inquired' (no confirm was
-- ever sent); from 'confirm_sent' on the PSP may have paid, so the answer comes from polling.
CREATE TABLE pm.psp_tx_map (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    intent_id          text NOT NULL,         -- exactly as the job carried it, so results echo it
    psp                text NOT NULL,         -- 'ipps', 'qp'
    action             text NOT NULL,         -- 'payout', 'collect'
    idempotency_key    text NOT NULL UNIQUE,  -- ours, sent on every mutating call: one key, one payment
    job_message_id     text NOT NULL,         -- the job's message id; results name it as job_id
    amount             bigint NOT NULL CHECK (amount >= 0),  -- minor units, as sent to the PSP
    currency           char(3) NOT NULL,
    -- How far the attempt got. Each phase is written before the call that leads out of it, so after a
    -- crash the row never claims less than what may have happened:
    --   recorded      the job was read; nothing sent to the PSP yet
    --   inquired      an inquiry answered (no money moves at inquiry)
    --   confirm_sent  a confirm may have reached the PSP: only the PSP's status can say what happened
    --   final         the PSP gave a final answer (status SUCCEEDED or FAILED), or we refused the job
    phase              text NOT NULL DEFAULT 'recorded'
                       CHECK (phase IN ('recorded', 'inquired', 'confirm_sent', 'final')),
    psp_inquiry_id     text,                  -- the last inquiry's id (inquiries expire; a retry makes a new one)
    psp_transfer_id    text,                  -- the PSP's transfer id, once it named one
    psp_status         text,                  -- the PSP's own last status word, kept beside ours (raw)
    status             text CHECK (status IN ('SUCCEEDED', 'FAILED', 'UNKNOWN')),  -- normalised
    failure_code       text,                  -- the PSP's code on FAILED
    trans_ref          text,                  -- the bank's reference on success
    result_message_id  text,                  -- set with phase final: a redelivered job republishes
    result_at          timestamptz,           --   the same result (same message id and time)
    attempts           integer NOT NULL DEFAULT 1,  -- deliveries of the job that reached the adapter
    polls              integer NOT NULL DEFAULT 0,  -- status reads made while the outcome was unknown
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    confirm_sent_at    timestamptz,           -- when money could first have moved
    CHECK (phase <> 'final' OR status IN ('SUCCEEDED', 'FAILED'))
);

-- The StatusPoller sweeps attempts whose outcome is still unknown, oldest first.
CREATE INDEX psp_tx_map_unresolved_idx ON pm.psp_tx_map (psp, updated_at) WHERE phase = 'confirm_sent';
-- The orchestrator (jobs DLQ handling) and operators look attempts up by intent.
CREATE INDEX psp_tx_map_intent_idx ON pm.psp_tx_map (intent_id);

-- Something PM could not settle on its own (a PSP result it could not process, a job dead-lettered
-- after it may have reached the PSP, a ledger/PSP mismatch): an operator reviews it and resolves it.
CREATE TABLE pm.reconciliation_alert (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,               -- 'psp_result_dead_lettered', 'psp_job_dead_lettered', …
    intent_id    text,                        -- the intent concerned, when known
    stream       text,                        -- the stream key and entry the alert is about, so the
    entry_id     text,                        --   record can be found with `pm dlq show`
    detail       jsonb NOT NULL DEFAULT '{}',  -- whatever the raiser knew (error, payload, PSP status)
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,                 -- NULL while open; set by the operator's review
    UNIQUE (kind, stream, entry_id)           -- raising the same alert twice (a redelivery) adds nothing
);

CREATE INDEX reconciliation_alert_open_idx ON pm.reconciliation_alert (created_at) WHERE resolved_at IS NULL;
