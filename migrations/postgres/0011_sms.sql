-- SMS: `sms` as a routed channel and an outbox channel, the number it reaches a user at, and
-- when the provider refused that number for good (no SMS goes to it until it is set again).

ALTER TABLE users ADD COLUMN phone_number TEXT;
ALTER TABLE users ADD COLUMN phone_number_invalid_at TIMESTAMPTZ;

ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('email', 'whatsapp', 'sms', 'webhook', 'webpush', 'fcm', 'apns'));

ALTER TABLE preferences DROP CONSTRAINT preferences_channel_check;
ALTER TABLE preferences ADD CONSTRAINT preferences_channel_check
    CHECK (channel IN ('email', 'whatsapp', 'sms', 'websocket', 'webhook', 'push'));
