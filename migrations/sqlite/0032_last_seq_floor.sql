-- A commit of notifications no longer writes its recipients' users rows. A user's highest seq
-- is the larger of `users.last_seq` and the highest seq of the user's notifications, which the
-- (user_id, seq) index answers with one seek; a commit writes the new rows and their index
-- entries, and the users row's page is no longer among what SQLite logs for it (a third of the
-- pages a commit of one notification wrote).
--
-- `users.last_seq` is the floor for the seqs that are no longer stored: a delete of a user's
-- newest notification first raises it to that seq, so that no seq is given twice once the
-- purge (or anything else) removed a user's every notification.
CREATE TRIGGER notifications_keep_last_seq
BEFORE DELETE ON notifications
WHEN OLD.seq > (SELECT last_seq FROM users WHERE id = OLD.user_id)
    AND NOT EXISTS (SELECT 1 FROM notifications WHERE user_id = OLD.user_id AND seq > OLD.seq)
BEGIN
    UPDATE users SET last_seq = OLD.seq WHERE id = OLD.user_id;
END;
