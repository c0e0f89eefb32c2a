-- Files attached to tickets. The bytes are objects in the attachment store (a folder or an
-- S3-compatible bucket) under `object_key`; a deleted file keeps its row as a tombstone
-- (`deleted_at`) until its object is removed (`removed_at`) and retention purges the row.
CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    INTEGER NOT NULL REFERENCES tickets (id),
    uploader_id  INTEGER NOT NULL REFERENCES users (id),
    file_name    TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    object_key   TEXT    NOT NULL UNIQUE,
    created_at   TEXT    NOT NULL,
    deleted_at   TEXT,
    removed_at   TEXT
);
CREATE INDEX attachments_ticket ON attachments (ticket_id);
CREATE INDEX attachments_uploader ON attachments (uploader_id);
-- The sweeper's queue: deleted files whose objects are still stored.
CREATE INDEX attachments_to_remove ON attachments (id) WHERE deleted_at IS NOT NULL AND removed_at IS NULL;
CREATE INDEX attachments_removed ON attachments (removed_at) WHERE removed_at IS NOT NULL;
