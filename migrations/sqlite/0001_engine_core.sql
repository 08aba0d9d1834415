-- appealflow engine core: appeals, their append-only history, durable timers, the
-- effect outbox and idempotency records. Timestamps are UTC text in one fixed format
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so they order correctly as strings.

CREATE TABLE appeals (
    id               TEXT PRIMARY KEY,
    ticket           TEXT NOT NULL UNIQUE,
    workflow         TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    account          TEXT NOT NULL,
    state            TEXT NOT NULL,
    outcome          TEXT,
    version          INTEGER NOT NULL CHECK (version >= 1),
    assignee         TEXT,
    data             TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX appeals_state ON appeals (state, created_at);
CREATE INDEX appeals_account ON appeals (account);

CREATE TABLE appeal_events (
    appeal_id  TEXT NOT NULL REFERENCES appeals (id),
    seq        INTEGER NOT NULL,
    transition TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    outcome    TEXT,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    reasons    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (appeal_id, seq)
);

-- History is append-only: the database refuses to rewrite it.
CREATE TRIGGER appeal_events_no_update BEFORE UPDATE ON appeal_events
BEGIN
    SELECT RAISE(ABORT, 'appeal_events is append-only');
END;
CREATE TRIGGER appeal_events_no_delete BEFORE DELETE ON appeal_events
BEGIN
    SELECT RAISE(ABORT, 'appeal_events is append-only');
END;

CREATE TABLE timers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id  TEXT NOT NULL REFERENCES appeals (id),
    name       TEXT NOT NULL,
    generation INTEGER NOT NULL,
    due_at     TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('armed', 'fired', 'cancelled')),
    armed_at   TEXT NOT NULL,
    settled_at TEXT,
    UNIQUE (appeal_id, name, generation)
);
CREATE INDEX timers_due ON timers (due_at) WHERE status = 'armed';
CREATE INDEX timers_appeal ON timers (appeal_id, name);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id       TEXT NOT NULL REFERENCES appeals (id),
    event_seq       INTEGER NOT NULL,
    effect          TEXT NOT NULL,
    template        TEXT,
    recipient       TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending',
    created_at      TEXT NOT NULL
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
