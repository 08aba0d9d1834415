-- appealflow engine core: appeals, their append-only history, durable timers, the
-- effect outbox and idempotency records.

CREATE TABLE appeals (
    id               TEXT PRIMARY KEY,
    ticket           TEXT NOT NULL UNIQUE,
    workflow         TEXT NOT NULL,
    workflow_version BIGINT NOT NULL,
    account          TEXT NOT NULL,
    state            TEXT NOT NULL,
    outcome          TEXT,
    version          BIGINT NOT NULL CHECK (version >= 1),
    assignee         TEXT,
    data             JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX appeals_state ON appeals (state, created_at);
CREATE INDEX appeals_account ON appeals (account);

CREATE TABLE appeal_events (
    appeal_id  TEXT NOT NULL REFERENCES appeals (id),
    seq        BIGINT NOT NULL,
    transition TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    outcome    TEXT,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    reasons    JSONB NOT NULL,
    payload    JSONB NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (appeal_id, seq)
);

-- History is append-only: the database refuses to rewrite it.
CREATE FUNCTION appeal_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'appeal_events is append-only';
END;
$$;
CREATE TRIGGER appeal_events_no_rewrite BEFORE UPDATE OR DELETE ON appeal_events
    FOR EACH ROW EXECUTE FUNCTION appeal_events_append_only();

CREATE TABLE timers (
    id         BIGSERIAL PRIMARY KEY,
    appeal_id  TEXT NOT NULL REFERENCES appeals (id),
    name       TEXT NOT NULL,
    generation BIGINT NOT NULL,
    due_at     TIMESTAMPTZ NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('armed', 'fired', 'cancelled')),
    armed_at   TIMESTAMPTZ NOT NULL,
    settled_at TIMESTAMPTZ,
    UNIQUE (appeal_id, name, generation)
);
CREATE INDEX timers_due ON timers (due_at) WHERE status = 'armed';
CREATE INDEX timers_appeal ON timers (appeal_id, name);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    appeal_id       TEXT NOT NULL REFERENCES appeals (id),
    event_seq       BIGINT NOT NULL,
    effect          TEXT NOT NULL,
    template        TEXT,
    recipient       TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending',
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
