-- Invitations an admin sends: a link (only its token's SHA-256 is kept) that makes an account
-- with a role, in a project, once, before it runs out.
CREATE TABLE invitations (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash       TEXT    NOT NULL UNIQUE,
    email            TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    project_id       INTEGER REFERENCES projects (id),
    created_by       INTEGER NOT NULL REFERENCES users (id),
    created_at       TEXT    NOT NULL,
    expires_at       TEXT    NOT NULL,
    accepted_at      TEXT,
    accepted_user_id INTEGER REFERENCES users (id),
    revoked_at       TEXT
);
-- Requests of signed-up people to join a project; an admin approves or declines each. One
-- waiting request per person and project.
CREATE TABLE join_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  INTEGER NOT NULL REFERENCES projects (id),
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    message     TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    decided_at  TEXT,
    decided_by  INTEGER REFERENCES users (id),
    approved    BOOLEAN
);
CREATE UNIQUE INDEX join_requests_waiting ON join_requests (project_id, user_id) WHERE decided_at IS NULL;
CREATE INDEX join_requests_user ON join_requests (user_id);
