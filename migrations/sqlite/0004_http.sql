-- HTTP service: API tokens (stored only as hashes) and applicants' drafts (each guarded
-- by a secret, stored only as a hash).

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reviewer', 'lead', 'admin')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE drafts (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    data        TEXT NOT NULL,
    ticket      TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX drafts_ticket ON drafts (ticket);
