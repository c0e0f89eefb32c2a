-- A scheduled send made with an API key belongs to the key: revoking the key cancels it, and
-- the key lists and cancels its own. Without a key, it belongs to its `created_by`.
ALTER TABLE scheduled_sends ADD COLUMN api_key_id INTEGER REFERENCES api_keys (id);
CREATE INDEX scheduled_sends_key ON scheduled_sends (api_key_id, status);
-- Sends made before this migration by a key acting as a user who is not an admin (a key's own
-- service user, or a client it was bound to) can only have come from that key: they are the
-- key's, when one key alone acts as that user. Those of a key revoked already are cancelled.
UPDATE scheduled_sends SET api_key_id = (SELECT k.id FROM api_keys k WHERE k.user_id = scheduled_sends.created_by)
WHERE api_key_id IS NULL
  AND (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = scheduled_sends.created_by) = 1
  AND (SELECT u.role FROM users u WHERE u.id = scheduled_sends.created_by) <> 'admin';
UPDATE scheduled_sends SET status = 'CANCELLED', detail = 'cancelled: the API key that scheduled it was revoked'
WHERE status = 'PENDING'
  AND api_key_id IN (SELECT id FROM api_keys WHERE revoked_at IS NOT NULL);

-- A key's service user made before this migration was named after the key: it moves to the
-- keys' namespace (`key:<name>`), which no registration or identity provider reaches. Its
-- `username_key` is computed again at start.
UPDATE users SET username = 'key:' || username, username_key = NULL
WHERE role = 'client'
  AND display_name = username
  AND id IN (SELECT k.user_id FROM api_keys k WHERE k.name = users.username);

-- The audit trail: who changed what someone may do, or whose data (see SECURITY.md).
CREATE TABLE audit_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,
    -- `user:<id>`, `key:<id>`, `cli` or `hub`.
    actor   TEXT    NOT NULL,
    -- `api_key.revoked`, `user.demoted`, `scheduled_send.cancelled`, `device.moved`, …
    action  TEXT    NOT NULL,
    -- `api_key:<id>`, `user:<id>`, `scheduled_send:<id>`, `device:<id>`.
    subject TEXT    NOT NULL,
    -- A JSON object: ids and reasons, never an address or a secret.
    detail  TEXT    NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
CREATE INDEX audit_events_action ON audit_events (action, id);

-- The pending code of each user's address per channel (only its hash), and how many messages
-- went: a user may have a few per day, and an address receives a few per day whoever asks.
CREATE TABLE address_verifications (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel      TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    code_hash    TEXT    NOT NULL,
    -- The email's link: the SHA-256 of a random token of its own (the code is for people to
    -- type, the token for the link, which anyone holding it may open).
    link_hash    TEXT,
    expires_at   TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    sends        INTEGER NOT NULL DEFAULT 0,
    window_start TEXT    NOT NULL,
    last_sent_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, channel)
);
CREATE UNIQUE INDEX address_verifications_link ON address_verifications (link_hash);

-- Verification messages sent to each address (by the SHA-256 of its normalized form) in the
-- day since `window_start`: a few a day, whoever asks. Rows older than a day are swept.
CREATE TABLE verification_counts (
    channel      TEXT NOT NULL,
    address_hash TEXT NOT NULL,
    window_start TEXT NOT NULL,
    sends        INTEGER NOT NULL,
    PRIMARY KEY (channel, address_hash)
);
