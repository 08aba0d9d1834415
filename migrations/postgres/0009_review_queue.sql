-- The review queue as one indexed query. The appeal row keeps copies of what the queue
-- orders and filters by, written by the same commit as the change that causes them:
--   review_due_at, review_fired: the latest review SLA timer not cancelled (armed or
--     fired): its due instant and whether it fired (NULL/false: none);
--   review_warn_at: the due instant of that timer's warning, when one was armed with it;
--   items: the appeal items the record asks for, as ',item,item,' ('' for none);
--   scenario: the record's scenario.
ALTER TABLE appeals
    ADD COLUMN review_due_at TIMESTAMPTZ,
    ADD COLUMN review_fired BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN review_warn_at TIMESTAMPTZ,
    ADD COLUMN items TEXT NOT NULL DEFAULT '',
    ADD COLUMN scenario TEXT;

-- Existing appeals: from their records and timers (`review_sla` is the review SLA's
-- timer name in every workflow shipped so far).
UPDATE appeals SET
    items = COALESCE((SELECT ',' || string_agg(i.value, ',' ORDER BY i.n) || ','
                      FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(appeals.data #> '{draft,items}') = 'array'
                                                          THEN appeals.data #> '{draft,items}' ELSE '[]' END)
                           WITH ORDINALITY AS i(value, n)), ''),
    scenario = appeals.data #>> '{draft,scenario}',
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
CREATE INDEX appeals_queue ON appeals ((review_due_at IS NULL), review_due_at, created_at, id)
    INCLUDE (state, assignee, scenario, items) WHERE outcome IS NULL;
-- Open appeals by state, with what the filters test: the counts per state.
CREATE INDEX appeals_queue_counts ON appeals (state) INCLUDE (assignee, scenario, items) WHERE outcome IS NULL;
