-- When a run of socket writes began (its seqs were each written as they were committed, between
-- first_at and at). NULL for rows written before: their at stands for both.
ALTER TABLE stream_events ADD COLUMN first_at TEXT;
