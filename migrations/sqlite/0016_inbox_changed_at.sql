-- When a user last changed a notification (read, unread, deleted), by the database's clock: a
-- node whose bus was away reads the changes it may have missed since then and tells its
-- sockets, which would otherwise show a stale inbox until they reconnect.
ALTER TABLE notifications ADD COLUMN inbox_changed_at TEXT;
CREATE INDEX notifications_inbox_changed ON notifications (inbox_changed_at)
    WHERE inbox_changed_at IS NOT NULL;
