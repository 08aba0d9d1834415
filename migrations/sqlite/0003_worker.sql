-- Worker: post-approval account actions, the built-in directory's ledger of applied
-- changes (exactly once by idempotency key), notifications as sent, and effect delivery.

CREATE TABLE appeal_actions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id       TEXT NOT NULL REFERENCES appeals (id),
    action          TEXT NOT NULL,
    -- Derived from (appeal, action): every attempt, on any worker, carries the same key.
    idempotency_key TEXT NOT NULL UNIQUE,
    manual          INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    result          TEXT,
    done_by         TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (appeal_id, action)
);
CREATE INDEX appeal_actions_failed ON appeal_actions (status) WHERE status = 'failed';

CREATE TABLE applied_account_changes (
    idempotency_key TEXT PRIMARY KEY,
    account         TEXT NOT NULL,
    action          TEXT NOT NULL,
    before          TEXT NOT NULL,
    after           TEXT NOT NULL,
    applied_at      TEXT NOT NULL
);

CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id        TEXT REFERENCES appeals (id),
    idempotency_key  TEXT NOT NULL UNIQUE,
    template         TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    locale           TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    recipient_masked TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);
CREATE INDEX notifications_appeal ON notifications (appeal_id, id);
