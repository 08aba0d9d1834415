-- Worker: post-approval account actions, the built-in directory's ledger of applied
-- changes (exactly once by idempotency key), notifications as sent, and effect delivery.

CREATE TABLE appeal_actions (
    id              BIGSERIAL PRIMARY KEY,
    appeal_id       TEXT NOT NULL REFERENCES appeals (id),
    action          TEXT NOT NULL,
    -- Derived from (appeal, action): every attempt, on any worker, carries the same key.
    idempotency_key TEXT NOT NULL UNIQUE,
    manual          BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    result          JSONB,
    done_by         TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (appeal_id, action)
);
CREATE INDEX appeal_actions_failed ON appeal_actions (status) WHERE status = 'failed';

CREATE TABLE applied_account_changes (
    idempotency_key TEXT PRIMARY KEY,
    account         TEXT NOT NULL,
    action          TEXT NOT NULL,
    before          JSONB NOT NULL,
    after           JSONB NOT NULL,
    applied_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE notifications (
    id               BIGSERIAL PRIMARY KEY,
    appeal_id        TEXT REFERENCES appeals (id),
    idempotency_key  TEXT NOT NULL UNIQUE,
    template         TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    locale           TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    recipient_masked TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    sent_at          TIMESTAMPTZ
);
CREATE INDEX notifications_appeal ON notifications (appeal_id, id);
