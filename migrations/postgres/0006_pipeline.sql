-- The worker pipeline by construction. Jobs are now written into the job queue's tables
-- in the same transaction as the transition that causes them, so the outbox is no longer
-- written (rows left from earlier versions are adopted once at start-up).
--
-- Notifications may be delivered in order across a recipient's channels (a fallback
-- chain: SMS first, email only if SMS fails for good): the later channels wait `held`
-- and end `skipped` once an earlier one was delivered. A row may name the transition
-- its delivery fires, and the one fired when every channel of its chain failed.
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'held', 'sent', 'failed', 'skipped'));
ALTER TABLE notifications ADD COLUMN chain TEXT;
ALTER TABLE notifications ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN on_delivered TEXT;
ALTER TABLE notifications ADD COLUMN on_undeliverable TEXT;
-- Earlier versions opened the resubmission window on the rejection notice's delivery by
-- template name; the row now says so itself.
UPDATE notifications SET on_delivered = 'notice_delivered' WHERE template = 'appeal_rejected';
CREATE INDEX notifications_chain ON notifications (chain, position) WHERE chain IS NOT NULL;
CREATE INDEX outbox_open ON outbox (id) WHERE status <> 'done';
