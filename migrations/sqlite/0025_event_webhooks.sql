-- Event webhooks: subscriptions admins make at run time, each hearing some of the hub's events
-- (`ticket.status_changed`, `notification.read`, `notification.delivered`, `delivery.failed`),
-- and one row per event and subscription, queued in the event's own transaction, posted
-- signed (Standard Webhooks) and retried; the rows are the subscription's delivery log.
CREATE TABLE webhook_subscriptions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT    NOT NULL,
    -- The event types it hears, a JSON array of strings.
    events          TEXT    NOT NULL,
    -- `whsec_` + base64.
    secret          TEXT    NOT NULL,
    description     TEXT    NOT NULL DEFAULT '',
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    -- Since when every post has failed (none since has gone through); cleared by a success.
    failing_since   TEXT,
    created_by      INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at      TEXT    NOT NULL
);
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_type      TEXT    NOT NULL,
    -- What the event is of: a ticket event's, a notification's or a delivery's id.
    subject_id      INTEGER NOT NULL,
    -- What the event knew when it happened, a JSON object.
    detail          TEXT    NOT NULL DEFAULT '{}',
    -- PENDING, SENDING, DELIVERED or FAILED.
    status          TEXT    NOT NULL DEFAULT 'PENDING',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    claimed_until   TEXT,
    response_status INTEGER,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('PENDING', 'SENDING');
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);
