-- What a change said beyond its status: a rejection's reason, an edit's fields before and after
-- (JSON: {"reason": "…"} or {"changes": [{"field": "title", "before": "…", "after": "…"}]}).
ALTER TABLE ticket_events ADD COLUMN detail TEXT;
-- A comment edited by its author keeps when; a deleted one stays as a tombstone (body emptied).
ALTER TABLE comments ADD COLUMN edited_at TIMESTAMPTZ;
ALTER TABLE comments ADD COLUMN deleted_at TIMESTAMPTZ;
