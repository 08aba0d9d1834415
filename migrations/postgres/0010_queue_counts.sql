-- The queue's counts as one capped index range per state: key the counts index by the
-- claim too (as SQLite's has been since 0009), so "held by this reviewer" and
-- "unclaimed" are ranges of it rather than a read of the whole state; and, for a
-- scenario asked for with no claim, an index that starts at that scenario rather than
-- reading the state through every scenario sorted before it.
DROP INDEX appeals_queue_counts;
CREATE INDEX appeals_queue_counts ON appeals (state, assignee, scenario) INCLUDE (items) WHERE outcome IS NULL;
CREATE INDEX appeals_queue_scenario ON appeals (state, scenario) INCLUDE (items) WHERE outcome IS NULL;
-- The open appeals without a review deadline (they sort last in the queue), in creation
-- order: a page after a cursor among them is a range of this index. (PostgreSQL rewrites
-- a condition on `appeals_queue`'s first column, `review_due_at IS NULL`, so that index
-- cannot be entered at such a place.)
CREATE INDEX appeals_queue_undated ON appeals (created_at, id) INCLUDE (state, assignee, scenario, items)
    WHERE outcome IS NULL AND review_due_at IS NULL;
