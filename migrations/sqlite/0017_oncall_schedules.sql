-- On-call schedules: who is on call when. A schedule's layers (users, rotation, handoff time,
-- start) are one JSON text, read whole with the schedule; overrides put someone on call
-- instead for a while.
CREATE TABLE oncall_schedules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT   NOT NULL UNIQUE,
    project_id  INTEGER REFERENCES projects (id) ON DELETE CASCADE,
    -- An IANA time zone: handoffs happen at their time of day there.
    time_zone   TEXT   NOT NULL,
    layers      TEXT   NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE oncall_overrides (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL REFERENCES oncall_schedules (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX oncall_overrides_schedule ON oncall_overrides (schedule_id, ends_at);
