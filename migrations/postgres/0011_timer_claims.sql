-- Due timers in claim order. The worker claims the first due timers by (due_at, id);
-- with the index on due_at alone, timers falling due at the same instant (a bulk of
-- appeals submitted together) came out of it unordered by id, so every claim sorted
-- all of them. Keyed by (due_at, id), a claim reads only the rows it takes.
DROP INDEX timers_due;
CREATE INDEX timers_due ON timers (due_at, id) WHERE status = 'armed';
-- Room on each page for an appeal's next version: a firing or a transition that changes
-- no indexed column (an SLA warning, a breach: a new version, a new updated_at) is then
-- written beside the old row (a heap-only update) instead of adding an entry to each of
-- the appeal's indexes. Applies to pages written from now on.
ALTER TABLE appeals SET (fillfactor = 80);
