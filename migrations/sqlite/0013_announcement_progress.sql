-- A large announcement commits in parts. With an Idempotency-Key, each part records how far
-- it got: the highest recipient id committed and, in `resource`, the notifications so far. A
-- retry with the key resumes after that recipient, so nobody is notified twice.
ALTER TABLE idempotency_keys ADD COLUMN progress INTEGER;
