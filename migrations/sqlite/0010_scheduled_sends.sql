-- Notifications an admin (or an API key) scheduled to be sent later. The recipients are
-- resolved when the send fires: `user_ids` (a JSON array) or `role`.
CREATE TABLE scheduled_sends (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    created_by        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_ids          TEXT,
    role              TEXT,
    notification_type TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    message           TEXT    NOT NULL,
    data              TEXT    NOT NULL,
    link              TEXT,
    channels          TEXT    NOT NULL,
    send_at           TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'FIRING', 'FIRED', 'CANCELLED', 'FAILED')),
    claimed_by        TEXT,
    claimed_until     TEXT,
    fired_at          TEXT,
    notified          INTEGER,
    detail            TEXT,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
);
CREATE INDEX scheduled_sends_due ON scheduled_sends (send_at) WHERE status IN ('PENDING', 'FIRING');
CREATE INDEX scheduled_sends_owner ON scheduled_sends (created_by, status);
