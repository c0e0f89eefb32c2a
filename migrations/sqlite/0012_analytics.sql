-- Delivery analytics: what the purge deletes of notifications, outbox rows and escalation steps
-- is first folded into hourly rollups (in the transaction that deletes it), so that the figures
-- of `GET /api/admin/analytics` outlive retention.

-- The counters of the rows purged, by the hour (UTC) their notification was committed in, its
-- type and the channel (`websocket` for the notifications themselves, the outbox channel for
-- outbound rows). See `tickethub_actors::analytics::Tally` for what each counts.
CREATE TABLE analytics_rollups (
    hour              TEXT    NOT NULL,
    notification_type TEXT    NOT NULL,
    channel           TEXT    NOT NULL,
    committed         INTEGER NOT NULL DEFAULT 0,
    pushed            INTEGER NOT NULL DEFAULT 0,
    delivered         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    suppressed        INTEGER NOT NULL DEFAULT 0,
    escalations       INTEGER NOT NULL DEFAULT 0,
    reads             INTEGER NOT NULL DEFAULT 0,
    reads_5m          INTEGER NOT NULL DEFAULT 0,
    reads_1h          INTEGER NOT NULL DEFAULT 0,
    reads_1d          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, notification_type, channel)
);

-- The read delays of the rows purged, as a histogram: how many were read at most `le_seconds`
-- after the commit (and more than the next smaller bound); -1 for slower than every bound.
CREATE TABLE analytics_read_delays (
    hour              TEXT    NOT NULL,
    notification_type TEXT    NOT NULL,
    channel           TEXT    NOT NULL,
    le_seconds        INTEGER NOT NULL,
    reads             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, notification_type, channel, le_seconds)
);

-- The live figures are read by when notifications were committed.
CREATE INDEX notifications_created_at ON notifications (created_at);
