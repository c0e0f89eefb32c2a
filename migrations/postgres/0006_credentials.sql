-- Credentials that can be ended: a version every token carries, refresh-token families,
-- usernames unique after normalization, and identity-provider subjects linked to users.

-- Bumped by a password, role or activation change: tokens carrying an older one are refused.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
-- The username NFKC-normalized and case-folded: `Admin` and `admin` (and look-alikes that
-- normalize alike) cannot both exist. NULL only for rows written before this column, which
-- the hub fills in at start.
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_username_lookalike ON users (username_key);

-- Every refresh token issued, so that it can be rotated, reused-detected and revoked.
CREATE TABLE refresh_tokens (
    jti        TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The login this token descends from (the first token's jti): reuse revokes them all.
    family     TEXT    NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    -- When it was traded for its successor.
    used_at    TIMESTAMPTZ,
    -- When its family was ended (logout, or the reuse of a rotated-out token).
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- An identity provider's user (issuer and subject) linked to a local user when first matched
-- by username; afterwards the link, not the username, decides.
CREATE TABLE identity_links (
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (issuer, subject),
    UNIQUE (issuer, user_id)
);
