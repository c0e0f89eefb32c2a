-- Fewer pages written by each commit of notifications. SQLite logs every page a commit touches
-- whole, and a notification touched six: the table's last leaf, its (user, seq) index, the
-- unread index, the created_at index, sqlite_sequence (AUTOINCREMENT's counter, written by
-- every insert) and the recipient's users row. The table is rebuilt without AUTOINCREMENT (an
-- id is then one above the largest, and the purge never deletes the newest row, so no id is
-- given twice), and without the unread and created_at indexes: a user's unread notifications
-- are found through the (user, seq) index, and the analytics' live rows by an id range (ids
-- grow with created_at).
--
-- The rebuild is SQLite's twelve steps, in the migration's transaction, on the connection the
-- hub migrates with, which has foreign keys off: dropping the old table neither cascades to
-- the rows that point at it nor fails. Every row keeps its id, so what pointed at it still does.
CREATE TABLE notifications_new (
    id                INTEGER PRIMARY KEY,
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
    event_id          INTEGER REFERENCES ticket_events (id) ON DELETE SET NULL,
    action            TEXT,
    actor_id          INTEGER,
    inbox_changed_at  TEXT,
    UNIQUE (user_id, seq)
);
INSERT INTO notifications_new (id, user_id, seq, notification_type, title, message, ticket_id,
    data, action_url, is_read, read_at, deleted_at, created_at, event_id, action, actor_id,
    inbox_changed_at)
SELECT id, user_id, seq, notification_type, title, message, ticket_id, data, action_url,
    is_read, read_at, deleted_at, created_at, event_id, action, actor_id, inbox_changed_at
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE INDEX notifications_event ON notifications (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX notifications_read_at ON notifications (read_at) WHERE read_at IS NOT NULL;
CREATE INDEX notifications_deleted_at ON notifications (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX notifications_inbox_changed ON notifications (inbox_changed_at)
    WHERE inbox_changed_at IS NOT NULL;
DELETE FROM sqlite_sequence WHERE name = 'notifications';
