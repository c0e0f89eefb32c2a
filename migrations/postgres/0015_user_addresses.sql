-- Channels are plug-ins: a user's addresses live in one table, one row per channel, whatever
-- the channel (email, WhatsApp, SMS, and any other channel with an address of each user's
-- own), and no table names the channels it may hold: the hub checks them. An address a person
-- types for themselves gets nothing but its verification message until they prove it theirs;
-- one an admin set counts as verified, and so do the addresses set before verification
-- existed, which were accepted as they were.
CREATE TABLE user_addresses (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel     TEXT   NOT NULL,
    address     TEXT   NOT NULL,
    -- When its owner proved it theirs, or an admin set it; nothing but a verification
    -- message goes to it before.
    verified_at TIMESTAMPTZ,
    -- When the provider refused it for good; nothing goes to it until it is set again.
    invalid_at  TIMESTAMPTZ,
    PRIMARY KEY (user_id, channel)
);
CREATE INDEX user_addresses_address ON user_addresses (channel, address);

INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at)
SELECT id, 'email', email, created_at, NULL FROM users WHERE email IS NOT NULL AND email <> '';
INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at)
SELECT id, 'whatsapp', whatsapp_number, created_at, NULL FROM users
WHERE whatsapp_number IS NOT NULL AND whatsapp_number <> '';
INSERT INTO user_addresses (user_id, channel, address, verified_at, invalid_at)
SELECT id, 'sms', phone_number, created_at, phone_number_invalid_at FROM users
WHERE phone_number IS NOT NULL AND phone_number <> '';

ALTER TABLE users
    DROP COLUMN email,
    DROP COLUMN whatsapp_number,
    DROP COLUMN phone_number,
    DROP COLUMN phone_number_invalid_at;

-- The outbox and the preferences take any channel.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE preferences DROP CONSTRAINT preferences_channel_check;
