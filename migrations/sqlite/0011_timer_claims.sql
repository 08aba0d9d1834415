-- Due timers in claim order: SQLite's `timers_due` (due_at) already ends every entry
-- with the timer's rowid, its id, so it gives the claim's (due_at, id) order as it is.
-- This migration keeps the two backends' migration numbers in step (PostgreSQL's 0011
-- re-keys its index by (due_at, id)); it changes nothing here.
SELECT 1;
