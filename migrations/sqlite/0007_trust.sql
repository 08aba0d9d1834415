-- Abuse limits shared by every process on the database: fixed-window counters (a key,
-- the window it counts in, how many), pruned once their window has passed.
CREATE TABLE rate_limits (
    key        TEXT NOT NULL,
    slot       INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (key, slot)
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);
-- Unsubmitted drafts expire: found by age.
CREATE INDEX drafts_unsubmitted ON drafts (updated_at) WHERE ticket IS NULL;
