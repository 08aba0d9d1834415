-- The review queue as one indexed query. The appeal row keeps copies of what the queue
-- orders and filters by, written by the same commit as the change that causes them:
--   review_due_at, review_fired: the latest review SLA timer not cancelled (armed or
--     fired): its due instant and whether it fired (NULL/0: none);
--   review_warn_at: the due instant of that timer's warning, when one was armed with it;
--   items: the appeal items the record asks for, as ',item,item,' ('' for none);
--   scenario: the record's scenario.
ALTER TABLE appeals ADD COLUMN review_due_at TEXT;
ALTER TABLE appeals ADD COLUMN review_fired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE appeals ADD COLUMN review_warn_at TEXT;
ALTER TABLE appeals ADD COLUMN items TEXT NOT NULL DEFAULT '';
ALTER TABLE appeals ADD COLUMN scenario TEXT;

-- Existing appeals: from their records and timers (`review_sla` is the review SLA's
-- timer name in every workflow shipped so far).
UPDATE appeals SET
    items = COALESCE((SELECT ',' || group_concat(j.value, ',') || ','
                      FROM json_each(appeals.data, '$.draft.items') j), ''),
    scenario = json_extract(appeals.data, '$.draft.scenario'),
    review_due_at = (SELECT s.due_at FROM timers s
                     WHERE s.appeal_id = appeals.id AND s.name = 'review_sla' AND s.status <> 'cancelled'
                     ORDER BY s.generation DESC LIMIT 1),
    review_fired = COALESCE((SELECT s.status = 'fired' FROM timers s
                             WHERE s.appeal_id = appeals.id AND s.name = 'review_sla' AND s.status <> 'cancelled'
                             ORDER BY s.generation DESC LIMIT 1), FALSE),
    review_warn_at = (SELECT (SELECT w.due_at FROM timers w
                              WHERE w.appeal_id = s.appeal_id AND w.name = 'review_sla.warning'
                                AND w.armed_at = s.armed_at
                              ORDER BY w.generation DESC LIMIT 1)
                      FROM timers s
                      WHERE s.appeal_id = appeals.id AND s.name = 'review_sla' AND s.status <> 'cancelled'
                      ORDER BY s.generation DESC LIMIT 1);

-- Open appeals in the queue's order, with what the filters test, so a page is read in
-- order from the index and stops at its last row.
CREATE INDEX appeals_queue ON appeals ((review_due_at IS NULL), review_due_at, created_at, id,
                                       state, assignee, scenario, items)
    WHERE outcome IS NULL;
-- Open appeals by state, with what the filters test: the counts per state.
CREATE INDEX appeals_queue_counts ON appeals (state, assignee, scenario, items) WHERE outcome IS NULL;
