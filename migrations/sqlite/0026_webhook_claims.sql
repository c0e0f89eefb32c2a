-- The node holding an event webhook's claim: only its answer is recorded, so that a late
-- answer to a claim another node took over changes nothing.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
