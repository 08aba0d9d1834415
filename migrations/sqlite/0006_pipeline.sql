-- The worker pipeline by construction. Jobs are now written into the job queue's tables
-- in the same transaction as the transition that causes them, so the outbox is no longer
-- written (rows left from earlier versions are adopted once at start-up).
--
-- Notifications may be delivered in order across a recipient's channels (a fallback
-- chain: SMS first, email only if SMS fails for good): the later channels wait `held`
-- and end `skipped` once an earlier one was delivered. A row may name the transition
-- its delivery fires, and the one fired when every channel of its chain failed.
CREATE TABLE notifications_v2 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id        TEXT REFERENCES appeals (id),
    idempotency_key  TEXT NOT NULL UNIQUE,
    template         TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    locale           TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    recipient_masked TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'held', 'sent', 'failed', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT,
    chain            TEXT,
    position         INTEGER NOT NULL DEFAULT 0,
    on_delivered     TEXT,
    on_undeliverable TEXT
);
INSERT INTO notifications_v2 (id, appeal_id, idempotency_key, template, channel, locale, recipient,
                              recipient_masked, body, status, attempts, last_error, created_at, sent_at,
                              on_delivered)
SELECT id, appeal_id, idempotency_key, template, channel, locale, recipient, recipient_masked, body, status,
       attempts, last_error, created_at, sent_at,
       -- Earlier versions opened the resubmission window on the rejection notice's delivery
       -- by template name; the row now says so itself.
       CASE WHEN template = 'appeal_rejected' THEN 'notice_delivered' END
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v2 RENAME TO notifications;
CREATE INDEX notifications_appeal ON notifications (appeal_id, id);
CREATE INDEX notifications_chain ON notifications (chain, position) WHERE chain IS NOT NULL;
CREATE INDEX outbox_open ON outbox (id) WHERE status <> 'done';
