-- Holds on outbound messages: a person's time zone and quiet hours (when email, SMS, push,
-- chat and voice wait unless the notification is a page), a project's maintenance windows
-- (when every outbound message about its tickets waits), and why a queued delivery waits.
CREATE TABLE user_quiet (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    time_zone   TEXT,
    -- `HH:MM` in the time zone (UTC without one); both or neither.
    quiet_start TEXT,
    quiet_end   TEXT
);
CREATE TABLE maintenance_windows (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    starts_at   TEXT    NOT NULL,
    ends_at     TEXT    NOT NULL,
    created_by  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT    NOT NULL
);
CREATE INDEX maintenance_windows_project ON maintenance_windows (project_id, ends_at);
-- `quiet_hours` or `maintenance` while a hold puts a delivery back; cleared when it is released.
ALTER TABLE deliveries ADD COLUMN held TEXT;
CREATE INDEX deliveries_held ON deliveries (held) WHERE held IS NOT NULL AND status = 'QUEUED';
