-- The reviewers' web console signs staff in with their API token and then holds a
-- session. Only the SHA-256 of the session's secret (the cookie) is stored, as for
-- tokens. `csrf` is a random value per session, kept in clear: it is presented in forms
-- beside the cookie, and without the cookie (which the hash does not give back) it
-- grants nothing. A session lives no longer than `expires_at` and no longer than its
-- token: revoking the token deletes its sessions.
CREATE TABLE staff_sessions (
    id           TEXT PRIMARY KEY,
    token_id     TEXT NOT NULL REFERENCES api_tokens (id),
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
-- The janitor prunes by expiry; revoking a token ends its sessions.
CREATE INDEX staff_sessions_expiry ON staff_sessions (expires_at);
CREATE INDEX staff_sessions_token ON staff_sessions (token_id);
