-- The loyalty worker's tables. A customer earns one point per whole unit of the order's
-- currency when the order ships, and loses them if the order is cancelled after that.

-- loyalty_entries: one row per order and kind, so an order earns (and is taken back) at most
-- once whatever is delivered again. `points` is positive for `earned`, negative for `revoked`.
CREATE TABLE IF NOT EXISTS loyalty_entries
(
    order_id    uuid        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('earned', 'revoked')),
    customer_id text        NOT NULL,
    points      bigint      NOT NULL CHECK ((kind = 'earned') = (points > 0) AND points <> 0),
    -- Why, in one word: shipped, delivered (earned), cancelled (revoked).
    reason      text        NOT NULL,
    -- The event that caused the entry, its log position and when it was stored.
    event_id    uuid        NOT NULL UNIQUE,
    position    bigint,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX IF NOT EXISTS loyalty_entries_by_customer
    ON loyalty_entries (customer_id, occurred_at DESC, order_id);

-- loyalty_balances: the sum of a customer's entries, kept in the statement that writes them.
CREATE TABLE IF NOT EXISTS loyalty_balances
(
    customer_id text        PRIMARY KEY,
    points      bigint      NOT NULL,
    entries     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
