-- A scheduled send may go to whoever an on-call schedule names when it fires: the target,
-- `oncall:<schedule>` or `oncall:<schedule>:next`, instead of `user_ids` or `role`.
ALTER TABLE scheduled_sends ADD COLUMN oncall TEXT;
