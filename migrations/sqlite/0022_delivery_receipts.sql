-- What providers said of messages after taking them: delivered to the handset, or not, with
-- their error code (Twilio's status callbacks).
CREATE TABLE delivery_receipts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    -- The provider's word for it: `delivered`, `undelivered`, `failed`, `read`, …
    status      TEXT    NOT NULL,
    error_code  TEXT,
    at          TEXT    NOT NULL
);
CREATE INDEX delivery_receipts_delivery ON delivery_receipts (delivery_id);
-- A receipt names the message by the provider's id.
CREATE INDEX deliveries_provider_message ON deliveries (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
