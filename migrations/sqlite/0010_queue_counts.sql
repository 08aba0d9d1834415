-- The queue's counts as one capped index range per state. With a scenario asked for and
-- no claim, `appeals_queue_counts` (state, assignee, scenario, ...) would be read from the
-- state's start through every scenario sorted before the one asked for; this index starts
-- at it.
CREATE INDEX appeals_queue_scenario ON appeals (state, scenario, items) WHERE outcome IS NULL;
