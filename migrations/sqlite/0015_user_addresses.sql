-- Channels are plug-ins: a user's addresses live in one table, one row per channel, whatever
-- the channel (email, WhatsApp, SMS, and any other channel with an address of each user's
-- own), and no table names the channels it may hold: the hub checks them. An address a person
-- types for themselves gets nothing but its verification message until they prove it theirs;
-- one an admin set counts as verified, and so do the addresses set before verification
-- existed, which were accepted as they were.
CREATE TABLE user_addresses (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    -- When its owner proved it theirs, or an admin set it; nothing but a verification
    -- message goes to it before.
    verified_at TEXT,
    -- When the provider refused it for good; nothing goes to it until it is set again.
    invalid_at  TEXT,
    PRIMARY KEY (user_id, channel)
);
CREATE INDEX user_addresses_address ON user_addresses (channel, address);

INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at)
SELECT id, 'email', email, created_at, NULL FROM users WHERE email IS NOT NULL AND email <> '';
INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at)
SELECT id, 'whatsapp', whatsapp_number, created_at, NULL FROM users
WHERE whatsapp_number IS NOT NULL AND whatsapp_number <> '';
INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at)
SELECT id, 'sms', phone_number, created_at, phone_number_invalid_at FROM users
WHERE phone_number IS NOT NULL AND phone_number <> '';

ALTER TABLE users DROP COLUMN email;
ALTER TABLE users DROP COLUMN whatsapp_number;
ALTER TABLE users DROP COLUMN phone_number;
ALTER TABLE users DROP COLUMN phone_number_invalid_at;

-- The outbox and the preferences take any channel: SQLite drops a CHECK constraint by
-- rebuilding the table (as 0011 did), ids and references carried over.
CREATE TABLE deliveries_next (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id     INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel             TEXT    NOT NULL,
    -- An email address, phone number or URL; a push's device id.
    address             TEXT    NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'QUEUED' CHECK (status IN ('QUEUED', 'SENDING', 'SENT', 'FAILED', 'SUPPRESSED')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TEXT    NOT NULL,
    -- Set while a channel actor holds the row; a stale claim is taken over after a crash.
    claimed_until       TEXT,
    last_error          TEXT,
    provider_message_id TEXT,
    sent_at             TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    claimed_by          TEXT,
    recipients          TEXT,
    -- Sent only if the notification is still unacknowledged and unread when due.
    unless_seen         INTEGER NOT NULL DEFAULT 0
);
INSERT INTO deliveries_next (id, notification_id, channel, address, status, attempts, next_attempt_at,
    claimed_until, last_error, provider_message_id, sent_at, created_at, updated_at, claimed_by, recipients,
    unless_seen)
SELECT id, notification_id, channel, address, status, attempts, next_attempt_at,
    claimed_until, last_error, provider_message_id, sent_at, created_at, updated_at, claimed_by, recipients,
    unless_seen
FROM deliveries;

CREATE TABLE delivery_attempts_next (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries_next (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed', 'suppressed')),
    error       TEXT,
    node        TEXT,
    at          TEXT    NOT NULL
);
INSERT INTO delivery_attempts_next (id, delivery_id, attempt, outcome, error, node, at)
SELECT id, delivery_id, attempt, outcome, error, node, at FROM delivery_attempts;

DELETE FROM sqlite_sequence WHERE name IN ('deliveries_next', 'delivery_attempts_next');
INSERT INTO sqlite_sequence (name, seq)
SELECT name || '_next', seq FROM sqlite_sequence WHERE name IN ('deliveries', 'delivery_attempts');

DROP TABLE delivery_attempts;
DROP TABLE deliveries;
ALTER TABLE deliveries_next RENAME TO deliveries;
ALTER TABLE delivery_attempts_next RENAME TO delivery_attempts;
CREATE INDEX deliveries_notification ON deliveries (notification_id);
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at)
    WHERE status IN ('QUEUED', 'SENDING');
CREATE INDEX deliveries_device ON deliveries (address, channel)
    WHERE status = 'QUEUED' AND channel IN ('webpush', 'fcm', 'apns');
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

CREATE TABLE preferences_next (
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A notification type, or '*' for every type.
    notification_type TEXT    NOT NULL,
    channel           TEXT    NOT NULL,
    enabled           INTEGER NOT NULL,
    PRIMARY KEY (user_id, notification_type, channel)
);
INSERT INTO preferences_next SELECT user_id, notification_type, channel, enabled FROM preferences;
DROP TABLE preferences;
ALTER TABLE preferences_next RENAME TO preferences;
