-- Project chats: a chat channel (Slack, Mattermost, Microsoft Teams) that hears a project's
-- ticket events, one message per ticket, kept current, its thread the ticket's history.
CREATE TABLE project_chats (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- The chat channel plug-in: `slack`, `mattermost` or `teams`.
    provider    TEXT    NOT NULL,
    -- Where on it: a Slack or Mattermost channel id, a Teams workflow's URL.
    channel     TEXT    NOT NULL,
    -- The events it hears and the priorities of their tickets, each `,a,b,` ('' for all).
    events      TEXT    NOT NULL DEFAULT '',
    priorities  TEXT    NOT NULL DEFAULT '',
    created_by  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at  TEXT    NOT NULL,
    UNIQUE (project_id, provider, channel)
);
-- The message that stands for a ticket in a chat (Slack's `channel:ts`, a Mattermost post id).
CREATE TABLE chat_threads (
    chat_id     INTEGER NOT NULL REFERENCES project_chats (id) ON DELETE CASCADE,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    message_ref TEXT    NOT NULL,
    PRIMARY KEY (chat_id, ticket_id)
);
-- Ticket events still to be told to a chat, written with the event; gone once told, kept
-- as FAILED (with why) when the chat refused them for good.
CREATE TABLE chat_updates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id       INTEGER NOT NULL REFERENCES project_chats (id) ON DELETE CASCADE,
    ticket_id     INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    event_id      INTEGER REFERENCES ticket_events (id) ON DELETE SET NULL,
    event_type    TEXT    NOT NULL,
    actor_id      INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- A rejection's reason or a comment's text.
    detail        TEXT    NOT NULL DEFAULT '',
    status        TEXT    NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'FIRING', 'FAILED')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        TEXT    NOT NULL,
    claimed_by    TEXT,
    claimed_until TEXT,
    last_error    TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX chat_updates_due ON chat_updates (status, due_at);
CREATE INDEX chat_updates_thread ON chat_updates (chat_id, ticket_id);
