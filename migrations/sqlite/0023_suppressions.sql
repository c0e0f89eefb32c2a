-- Addresses nothing more goes to: an email address that bounced for good or whose owner
-- complained of the hub's mail, a number the SMS provider says cannot take messages. A
-- send to one is recorded as suppressed, with the reason; an admin takes an address off.
CREATE TABLE suppressions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT    NOT NULL,
    -- In lower case.
    address     TEXT    NOT NULL,
    -- `bounce`, `complaint` or `provider`.
    source      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    -- The delivery that told (kept as a number: deliveries are purged by retention).
    delivery_id INTEGER,
    created_at  TEXT    NOT NULL,
    UNIQUE (channel, address)
);
-- What a bounce's report said beyond its code (the remote server's diagnostic).
ALTER TABLE delivery_receipts ADD COLUMN detail TEXT;
