-- Crypto-shredding: one data key per customer, stored wrapped (encrypted) under the master
-- key, which never reaches the database. Deleting a customer's row makes every copy of their
-- sealed personal data unreadable.
CREATE TABLE IF NOT EXISTS customer_keys
(
    key_id      uuid        PRIMARY KEY,
    customer_id text        NOT NULL UNIQUE,
    -- nonce (12 bytes) || AES-256-GCM(master key, data key), bound to key_id
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The CustomerForgotten facts: who was forgotten, when, and how much was erased.
CREATE TABLE IF NOT EXISTS forgotten_customers
(
    forget_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  text        NOT NULL,
    keys_deleted integer     NOT NULL,
    orders       integer     NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS forgotten_customers_by_customer ON forgotten_customers (customer_id);
