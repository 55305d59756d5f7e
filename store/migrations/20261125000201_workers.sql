-- The workers' own tables. Each is written in the same transaction as the worker's inbox
-- claim, so a redelivered event changes nothing.

-- inventory: stock per SKU (never negative: reservations are conditional decrements).
CREATE TABLE IF NOT EXISTS inventory_stock
(
    sku        text        PRIMARY KEY,
    available  bigint      NOT NULL CHECK (available >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- inventory: what was decided for each order, keyed by order.
--   reserved   stock taken for `lines`; ConfirmOrder{reservation_id} sent
--   rejected   nothing taken; RejectOrder{unavailable_skus} sent
--   released   was reserved, given back on cancellation (exactly once)
--   cancelled  a tombstone: the cancellation was seen before the placement; nothing reserved
CREATE TABLE IF NOT EXISTS inventory_reservations
(
    order_id         uuid        PRIMARY KEY,
    reservation_id   uuid,
    status           text        NOT NULL
        CHECK (status IN ('reserved', 'rejected', 'released', 'cancelled')),
    lines            jsonb       NOT NULL DEFAULT '[]',
    unavailable_skus jsonb       NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inventory_reservations_reserved
    ON inventory_reservations (status) WHERE status = 'reserved';

-- notifications: one per notifiable event; notification_id is derived from the event id and
-- sent along as the idempotency key (webhook header, e-mail Message-ID).
CREATE TABLE IF NOT EXISTS notifications
(
    notification_id uuid        PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    order_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    channel         text        NOT NULL,
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_by_order ON notifications (order_id, created_at);

-- shipments: at most one per order; shipment_id is derived from the OrderConfirmed event id
-- and sent to the carrier as the Idempotency-Key.
--   requested  recorded, carrier not asked yet (or asking failed and will be retried)
--   booked     the carrier answered with a tracking number; StartShipment not yet accepted
--   started    StartShipment accepted
--   skipped    the order was no longer confirmed (cancelled): no shipment
--   refused    the carrier refused (4xx): parked in the dead-letter stream
CREATE TABLE IF NOT EXISTS shipments
(
    order_id        uuid        PRIMARY KEY,
    shipment_id     uuid        NOT NULL UNIQUE,
    event_id        uuid        NOT NULL,
    status          text        NOT NULL
        CHECK (status IN ('requested', 'booked', 'started', 'skipped', 'refused')),
    carrier         text,
    tracking_number text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
