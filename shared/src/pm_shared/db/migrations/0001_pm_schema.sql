-- The runner bootstraps schema pm and pm.schema_migration itself; repeating the schema here keeps
-- this file runnable by hand (psql -f) on an empty database.
CREATE SCHEMA IF NOT EXISTS pm;

-- Transactional outbox (DESIGN §5): rows are written in the same transaction as the state change
-- that caused them, so a crash after commit can never lose a message; the relay publishes what is
-- left unpublished.
CREATE TABLE pm.outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Logical stream name (pm:ledger:commands); the relay maps it to a partition when publishing.
    stream       text NOT NULL,
    intent_id    text NOT NULL,
    -- The message's idempotency key: unique so a retried transaction cannot enqueue it twice, and
    -- consumers deduplicate on it when the relay publishes a row more than once.
    message_id   text NOT NULL UNIQUE,
    -- The encoded msgspec message, stored as bytes so the relay publishes exactly what was written.
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- NULL until published; stays NULL after a crash between commit and publish.
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);

-- The relay only ever scans unpublished rows in id order; a partial index stays small however
-- many published rows the table keeps.
CREATE INDEX outbox_unpublished_idx ON pm.outbox (id) WHERE published_at IS NULL;
