-- Step records: what each consumer did with each event it received, one row per attempt
-- and per turn of its fate (retrying, dead_lettered, redriven, handled, already_handled).
-- Written by the consumer runtime, one statement per batch; read by `orderflow trace` and
-- GET /v1/admin/orders/{id}/trace (by event id). Rows older than the trace retention are
-- removed by the relay that holds the relay lock (by recorded_at, hence the BRIN index:
-- rows arrive in time order, and a BRIN index costs next to nothing to keep).
CREATE TABLE IF NOT EXISTS consumer_steps
(
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    attempt     bigint      NOT NULL,
    outcome     text        NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_ms bigint      NOT NULL DEFAULT 0,
    error       text,
    effect      text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS consumer_steps_event ON consumer_steps (event_id);
CREATE INDEX IF NOT EXISTS consumer_steps_recorded_at ON consumer_steps USING brin (recorded_at);

-- When the relay published each batch: one row per acknowledged batch of positions
-- (from_position..=to_position), written with the relay's checkpoint in one statement.
CREATE TABLE IF NOT EXISTS relay_publications
(
    stream        text        NOT NULL,
    from_position bigint      NOT NULL,
    to_position   bigint      NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS relay_publications_to ON relay_publications (stream, to_position);
CREATE INDEX IF NOT EXISTS relay_publications_published_at ON relay_publications USING brin (published_at);
