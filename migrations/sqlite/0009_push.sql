-- Push: the devices a user registered (browsers' Web Push subscriptions, apps' FCM and APNs
-- tokens), `push` as a routed channel, its carriers as outbox channels, and pushes that wait
-- for their notification to stay unseen.

-- `token` is the Web Push endpoint URL, or the FCM or APNs token; one device per token.
CREATE TABLE devices (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL CHECK (kind IN ('webpush', 'fcm', 'apns')),
    token        TEXT    NOT NULL,
    p256dh       TEXT,
    auth         TEXT,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT,
    UNIQUE (kind, token)
);
CREATE INDEX devices_user ON devices (user_id);

-- SQLite changes a CHECK constraint by rebuilding the table. Migrations run in a transaction
-- with foreign keys on, so the attempts are copied into a table that references the new
-- outbox before the old tables go, and the renames carry the reference over.
CREATE TABLE deliveries_next (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id     INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel             TEXT    NOT NULL CHECK (channel IN ('email', 'whatsapp', 'webhook', 'webpush', 'fcm', 'apns')),
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
    claimed_until, last_error, provider_message_id, sent_at, created_at, updated_at, claimed_by, recipients)
SELECT id, notification_id, channel, address, status, attempts, next_attempt_at,
    claimed_until, last_error, provider_message_id, sent_at, created_at, updated_at, claimed_by, recipients
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
    channel           TEXT    NOT NULL CHECK (channel IN ('email', 'whatsapp', 'websocket', 'webhook', 'push')),
    enabled           INTEGER NOT NULL,
    PRIMARY KEY (user_id, notification_type, channel)
);
INSERT INTO preferences_next SELECT user_id, notification_type, channel, enabled FROM preferences;
DROP TABLE preferences;
ALTER TABLE preferences_next RENAME TO preferences;

-- An escalation step's `push = { unless_seen_within }`, in seconds.
ALTER TABLE escalations ADD COLUMN push_wait INTEGER;
