-- A scheduled send made with an API key belongs to the key: revoking the key cancels it, and
-- the key lists and cancels its own. Without a key, it belongs to its `created_by`.
ALTER TABLE scheduled_sends ADD COLUMN api_key_id INTEGER REFERENCES api_keys (id);
CREATE INDEX scheduled_sends_key ON scheduled_sends (api_key_id, status);

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

-- An address a person typed for themselves gets nothing but its verification message until
-- they prove it is theirs; one an admin set counts as verified. Addresses set before this
-- migration were accepted as they were, and count as verified.
ALTER TABLE users ADD COLUMN email_verified_at TEXT;
ALTER TABLE users ADD COLUMN whatsapp_verified_at TEXT;
ALTER TABLE users ADD COLUMN phone_verified_at TEXT;
UPDATE users SET email_verified_at = created_at WHERE email IS NOT NULL;
UPDATE users SET whatsapp_verified_at = created_at WHERE whatsapp_number IS NOT NULL;
UPDATE users SET phone_verified_at = created_at WHERE phone_number IS NOT NULL;

-- The pending code of each user's address per channel (only its hash), and how many messages
-- went: a user may have a few per day, and an address receives a few per day whoever asks.
CREATE TABLE address_verifications (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel      TEXT    NOT NULL CHECK (channel IN ('email', 'whatsapp', 'sms')),
    address      TEXT    NOT NULL,
    code_hash    TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    sends        INTEGER NOT NULL DEFAULT 0,
    window_start TEXT    NOT NULL,
    last_sent_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, channel)
);
CREATE INDEX address_verifications_address ON address_verifications (channel, address);

-- Each verification message sent, by the address's hash: an address receives a few per day,
-- whoever asks for them.
CREATE TABLE verification_messages (
    channel      TEXT NOT NULL,
    address_hash TEXT NOT NULL,
    sent_at      TEXT NOT NULL
);
CREATE INDEX verification_messages_address ON verification_messages (channel, address_hash, sent_at);
