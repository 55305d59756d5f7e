-- The event store. The first seven columns are the ones postgres-es 0.5 reads and writes;
-- its inserts name their columns, so the columns after them take their defaults.
--   insert_position  assigned at insert time (not commit time): a tie-breaker, never a cursor
--   tx_id            the writing transaction, kept for diagnosis
--   global_position  commit-ordered, gapless: numbered by the relay after commit (see store/src/log.rs)
CREATE TABLE IF NOT EXISTS events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    insert_position bigint GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    event_id        uuid                         NOT NULL DEFAULT gen_random_uuid(),
    global_position bigint,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id);
CREATE UNIQUE INDEX IF NOT EXISTS events_insert_position ON events (insert_position);
CREATE UNIQUE INDEX IF NOT EXISTS events_global_position ON events (global_position);
CREATE INDEX IF NOT EXISTS events_unsequenced ON events (tx_id, insert_position)
    WHERE global_position IS NULL;

-- postgres-es needs this table to exist even though orderflow takes no snapshots.
CREATE TABLE IF NOT EXISTS snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Wakes the relay when events commit (NOTIFY is delivered at commit, once per transaction).
CREATE OR REPLACE FUNCTION orderflow_notify_events() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('orderflow_events', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS events_notify ON events;
CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION orderflow_notify_events();

-- Idempotency keys of POST /v1/orders: one order per key, the body it was first sent with.
CREATE TABLE IF NOT EXISTS idempotency_keys
(
    idempotency_key text        PRIMARY KEY,
    request_body    jsonb       NOT NULL,
    order_id        uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The inbox: which consumer handled which event, written in the same transaction as the
-- consumer's effect so that a redelivered message changes nothing.
CREATE TABLE IF NOT EXISTS inbox
(
    consumer   text        NOT NULL,
    event_id   uuid        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
