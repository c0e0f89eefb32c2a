-- A webhook delivery posts one event for every recipient of a commit's notification: their
-- ids and names, as a JSON array. NULL means the notification's own recipient alone.
ALTER TABLE deliveries ADD COLUMN recipients TEXT;
