-- The relay's durable checkpoint: the last global position published to each stream.
CREATE TABLE IF NOT EXISTS relay_checkpoints
(
    stream     text        PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
