-- Projections (crate orderflow-projections). The checkpoint of each projection is written in
-- the same transaction as its rows: the last global position folded into its live tables.
CREATE TABLE IF NOT EXISTS projection_checkpoints
(
    name       text        PRIMARY KEY,
    version    integer     NOT NULL,
    position   bigint      NOT NULL DEFAULT 0,
    state      text        NOT NULL DEFAULT 'live',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The live tables of version 1 of each projection, so queries answer before the first
-- rebuild. They are the DDL templates of projections/src/{order_summary,analytics}.rs with
-- {table} replaced by the live name; a rebuild (and a version bump) replaces them.
CREATE TABLE IF NOT EXISTS order_summary
(
    id              uuid        PRIMARY KEY,
    customer_id     text        NOT NULL,
    status          text        NOT NULL,
    total           bigint      NOT NULL,
    currency        text        NOT NULL,
    line_count      integer     NOT NULL,
    placed_at       timestamptz NOT NULL,
    tracking_number text,
    version         bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS order_summary_placed ON order_summary (placed_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS order_summary_customer ON order_summary (customer_id, placed_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS order_summary_status ON order_summary (status, placed_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS analytics_orders
(
    order_id uuid   PRIMARY KEY,
    status   text   NOT NULL,
    day      date   NOT NULL,
    currency text   NOT NULL,
    total    bigint NOT NULL,
    lines    jsonb  NOT NULL,
    version  bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS analytics_revenue
(
    day      date   NOT NULL,
    currency text   NOT NULL,
    orders   bigint NOT NULL,
    revenue  bigint NOT NULL,
    PRIMARY KEY (day, currency)
);
CREATE TABLE IF NOT EXISTS analytics_status
(
    day    date   NOT NULL,
    status text   NOT NULL,
    orders bigint NOT NULL,
    PRIMARY KEY (day, status)
);
CREATE TABLE IF NOT EXISTS analytics_skus
(
    day      date   NOT NULL,
    sku      text   NOT NULL,
    currency text   NOT NULL,
    units    bigint NOT NULL,
    revenue  bigint NOT NULL,
    PRIMARY KEY (day, sku, currency)
);

INSERT INTO projection_checkpoints (name, version) VALUES ('order-summary', 1), ('analytics', 1)
ON CONFLICT (name) DO NOTHING;
