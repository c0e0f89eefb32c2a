-- Keys for servers (`Authorization: Api-Key <key>`), and the records that make a retried write
-- (`Idempotency-Key`) answer as the first one did.

-- A key is `<prefix>.<secret>`; only its SHA-256 is kept. It acts as `user_id`, its service
-- user, within its scopes (a comma-separated list).
CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL UNIQUE,
    key_hash     TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

-- One per caller (`user:<id>` or `key:<id>`) and key. `fingerprint` is the request's method,
-- path and body hashed: the same key with another request is refused. A row is claimed
-- (`lease_until`) while its request runs; `committed_at` and `resource` are written in the
-- transaction that commits the request's effects, `status` and `response` once it is answered.
CREATE TABLE idempotency_keys (
    caller       TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL,
    committed_at TIMESTAMPTZ,
    resource     BIGINT,
    status       INTEGER,
    response     TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (caller, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
