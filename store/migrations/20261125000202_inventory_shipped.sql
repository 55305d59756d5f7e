-- inventory: a reservation whose order shipped is no longer held stock; the goods left.
--   shipped    was reserved; the order's shipment started, so the units are deducted for good
ALTER TABLE inventory_reservations DROP CONSTRAINT IF EXISTS inventory_reservations_status_check;
ALTER TABLE inventory_reservations ADD CONSTRAINT inventory_reservations_status_check
    CHECK (status IN ('reserved', 'rejected', 'released', 'cancelled', 'shipped'));
