-- Which hub process holds a claimed delivery, so that a restarted channel actor can take back
-- its own claims at once instead of waiting for the lease.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
