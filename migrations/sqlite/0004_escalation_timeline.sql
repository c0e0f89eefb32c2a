-- What happened to each notification, for its timeline and the trace, and the durable
-- escalation steps.

-- Every event a ticket went through, with the parties routing resolved it against.
CREATE TABLE ticket_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id      INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    event_type     TEXT    NOT NULL,
    -- The REST action (`create`, `assign`, `start_work`, …) and who took it.
    action         TEXT    NOT NULL,
    actor_id       INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- The ticket's status after the event, and its assignees (JSON arrays of ids).
    status         TEXT    NOT NULL,
    assignees      TEXT    NOT NULL DEFAULT '[]',
    newly_assigned TEXT    NOT NULL DEFAULT '[]',
    created_at     TEXT    NOT NULL
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id);

-- Why a notification was committed: the ticket event, or the action and actor of a commit
-- without a ticket (an admin's send, a sign-up, an escalation).
ALTER TABLE notifications ADD COLUMN event_id INTEGER REFERENCES ticket_events (id) ON DELETE SET NULL;
ALTER TABLE notifications ADD COLUMN action TEXT;
ALTER TABLE notifications ADD COLUMN actor_id INTEGER;

-- Pushes to sockets and acks, per user and node, as runs of seqs (one row per run and
-- recorder batch, not per notification).
CREATE TABLE stream_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- `pushed` (written to `sockets` sockets on `node`) or `acked` (everything up to last_seq).
    kind      TEXT    NOT NULL CHECK (kind IN ('pushed', 'acked')),
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    sockets   INTEGER NOT NULL DEFAULT 0,
    node      TEXT,
    at        TEXT    NOT NULL
);
CREATE INDEX stream_events_user ON stream_events (user_id, last_seq);

-- Each attempt of an outbound delivery and its outcome.
CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed')),
    error       TEXT,
    node        TEXT,
    at          TEXT    NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- One pending (or finished) escalation step of a notification.
CREATE TABLE escalations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    ticket_id       INTEGER REFERENCES tickets (id) ON DELETE CASCADE,
    -- The ticket's status when the notification was committed: the step stops once it moved.
    cause_status    TEXT,
    policy          TEXT    NOT NULL,
    step            INTEGER NOT NULL,
    -- `read` or `acked`: what stops the step.
    unless_seen     TEXT    NOT NULL CHECK (unless_seen IN ('read', 'acked')),
    channels        TEXT    NOT NULL,
    also            TEXT    NOT NULL DEFAULT '',
    due_at          TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'FIRING', 'FIRED', 'CANCELLED', 'FAILED')),
    claimed_by      TEXT,
    claimed_until   TEXT,
    -- Why it was cancelled, or what firing did.
    detail          TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX escalations_due ON escalations (status, due_at);
CREATE INDEX escalations_notification ON escalations (notification_id);
CREATE INDEX escalations_user ON escalations (user_id, status);
CREATE INDEX escalations_ticket ON escalations (ticket_id, status);
