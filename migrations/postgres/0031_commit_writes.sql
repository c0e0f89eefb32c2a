-- Less written by each commit of notifications.
--
-- A recipient's seq bump rewrites its users row. With the table's pages full, the new version
-- went to another page, with a new entry in each of the table's indexes (a fan-out to 10,000
-- recipients moved 10,000 rows and wrote 30,000 index entries, and the table grew until
-- vacuumed). Pages half full keep every new version on its page (a heap-only update, no index
-- entry), even when one statement bumps every user of a page; the table is rewritten so that
-- its existing pages leave that room too.
ALTER TABLE users SET (fillfactor = 50);
CLUSTER users USING users_pkey;

-- Every notification inserted an entry in four indexes: its id, its (user, seq), the unread
-- index and the created_at index. As on SQLite (its migration 0031), a user's unread
-- notifications are found through the (user, seq) index, and the analytics' live rows by an
-- id range (ids grow with created_at, found by a binary search over the ids), so the unread
-- and created_at indexes go.
DROP INDEX IF EXISTS notifications_unread;
DROP INDEX IF EXISTS notifications_created_at;
