-- Retention and erasure: indexes that let old rows be found without a scan, due-row indexes
-- that hold only the rows still due, and the mark of an erased user.

-- The outbox and the escalations are claimed by what is due: finished rows, which are nearly
-- all of them, need no entry in those indexes.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at)
    WHERE status IN ('QUEUED', 'SENDING');
DROP INDEX escalations_due;
CREATE INDEX escalations_due ON escalations (due_at)
    WHERE status IN ('PENDING', 'FIRING');

-- notifications.event_id references ticket_events: a purged event finds its notifications
-- without a scan.
CREATE INDEX notifications_event ON notifications (event_id) WHERE event_id IS NOT NULL;

-- Retention finds read and deleted notifications by when that happened.
CREATE INDEX notifications_read_at ON notifications (read_at) WHERE read_at IS NOT NULL;
CREATE INDEX notifications_deleted_at ON notifications (deleted_at) WHERE deleted_at IS NOT NULL;

-- When a user was erased (`tickethub users erase`): their row stays, nameless, so that the
-- tickets and comments they wrote keep an author.
ALTER TABLE users ADD COLUMN erased_at TEXT;
