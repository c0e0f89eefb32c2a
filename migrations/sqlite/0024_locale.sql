-- A person's language for the messages the hub sends them (a BCP 47 tag: `de`, `pt-BR`),
-- kept beside their time zone; none: the hub's default templates.
ALTER TABLE user_quiet ADD COLUMN locale TEXT;
