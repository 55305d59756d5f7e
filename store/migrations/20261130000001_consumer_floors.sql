-- How far each worker's durable consumer had got: every event up to `position` was handled
-- (or parked). Noted every few seconds from the consumer's ack floor, so that a durable
-- consumer lost with the broker is created again after it, not at the start of the log.
CREATE TABLE IF NOT EXISTS consumer_floors
(
    consumer   text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
