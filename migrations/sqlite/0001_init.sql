-- The whole schema of tickethub, SQLite dialect. Never edit an applied migration: add one.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL DEFAULT '',
    email           TEXT,
    whatsapp_number TEXT,
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'developer', 'client')),
    is_superuser    INTEGER NOT NULL DEFAULT 0,
    is_active       INTEGER NOT NULL DEFAULT 1,
    password_hash   TEXT    NOT NULL,
    -- Highest notification seq allocated to this user (seq is per recipient, gapless).
    last_seq        INTEGER NOT NULL DEFAULT 0,
    -- Highest seq any of the user's clients acknowledged with an `ack` frame.
    acked_seq       INTEGER NOT NULL DEFAULT 0,
    -- Highest seq written to any socket of the user.
    sent_seq        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT    NOT NULL
);

CREATE TABLE projects (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key                TEXT    NOT NULL UNIQUE,
    name               TEXT    NOT NULL,
    -- The number the next ticket of this project takes (PROJ-<n>).
    next_ticket_number INTEGER NOT NULL DEFAULT 1,
    created_at         TEXT    NOT NULL
);

CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE tickets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  INTEGER NOT NULL REFERENCES projects (id),
    number      INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    priority    TEXT    NOT NULL CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    category    TEXT    NOT NULL CHECK (category IN ('BUG', 'FEATURE', 'SUPPORT', 'OTHER')),
    status      TEXT    NOT NULL,
    created_by  INTEGER NOT NULL REFERENCES users (id),
    -- Bumped by every change; writes check it so that no update is lost.
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    UNIQUE (project_id, number)
);
CREATE INDEX tickets_status ON tickets (status);

CREATE TABLE ticket_assignees (
    ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (ticket_id, user_id)
);
CREATE INDEX ticket_assignees_user ON ticket_assignees (user_id);

CREATE TABLE comments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    author_id  INTEGER NOT NULL REFERENCES users (id),
    body       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE INDEX comments_ticket ON comments (ticket_id);

CREATE TABLE notifications (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    notification_type TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    message           TEXT    NOT NULL,
    ticket_id         INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    -- A JSON object, validated at the edge.
    data              TEXT    NOT NULL DEFAULT '{}',
    action_url        TEXT,
    is_read           INTEGER NOT NULL DEFAULT 0,
    read_at           TEXT,
    -- Deleted by the user: hidden from lists and replay, kept so that seq stays gapless.
    deleted_at        TEXT,
    created_at        TEXT    NOT NULL,
    UNIQUE (user_id, seq)
);
CREATE INDEX notifications_unread ON notifications (user_id, is_read) WHERE deleted_at IS NULL;

CREATE TABLE deliveries (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id     INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel             TEXT    NOT NULL CHECK (channel IN ('email', 'whatsapp', 'webhook')),
    address             TEXT    NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'QUEUED' CHECK (status IN ('QUEUED', 'SENDING', 'SENT', 'FAILED')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TEXT    NOT NULL,
    -- Set while a channel actor holds the row; a stale claim is taken over after a crash.
    claimed_until       TEXT,
    last_error          TEXT,
    provider_message_id TEXT,
    sent_at             TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (channel, status, next_attempt_at);
CREATE INDEX deliveries_notification ON deliveries (notification_id);

CREATE TABLE preferences (
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A notification type, or '*' for every type.
    notification_type TEXT    NOT NULL,
    channel           TEXT    NOT NULL CHECK (channel IN ('email', 'whatsapp', 'websocket', 'webhook')),
    enabled           INTEGER NOT NULL,
    PRIMARY KEY (user_id, notification_type, channel)
);
