-- Batches: a delivery that went out inside another's message (`batch_of`, the carrier) ends as
-- that one does and is never claimed itself.
ALTER TABLE deliveries ADD COLUMN batch_of INTEGER;
CREATE INDEX deliveries_batch ON deliveries (batch_of) WHERE batch_of IS NOT NULL;

-- Digests: how often a person wants one (`hourly`, `daily`) and at what local time (`HH:MM`).
ALTER TABLE user_quiet ADD COLUMN digest_every TEXT;
ALTER TABLE user_quiet ADD COLUMN digest_at TEXT;
-- A person's next digest, one row while they want them: due at a moment, claimed by one node
-- for a lease, covering the notifications after `since`.
CREATE TABLE digests (
    user_id       INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    due_at        TEXT    NOT NULL,
    since         TEXT    NOT NULL,
    claimed_by    TEXT,
    claimed_until TEXT
);
CREATE INDEX digests_due ON digests (due_at);
-- Digests sent, for the analytics: when, to whom, how many notifications each summed up.
CREATE TABLE digest_sends (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notifications INTEGER NOT NULL,
    sent_at       TEXT    NOT NULL
);
CREATE INDEX digest_sends_at ON digest_sends (sent_at);

-- The analytics count what went out inside another's message.
ALTER TABLE analytics_rollups ADD COLUMN batched INTEGER NOT NULL DEFAULT 0;
