-- Replies to what the hub sent: a notification acknowledged from outside the hub (an SMS
-- reply, say), by whom and how; and the answer given to each inbound message, so that a
-- provider that sends it again gets the same answer and nothing is done twice.
CREATE TABLE acknowledgements (
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    via             TEXT   NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notification_id, via)
);
CREATE TABLE inbound_messages (
    provider    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    answer      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, message_id)
);
CREATE INDEX inbound_messages_created ON inbound_messages (created_at);
