-- Intake: the embedded account directory, and at most one open appeal per account.

CREATE TABLE accounts (
    name       TEXT PRIMARY KEY,
    record     JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- The keys a forgotten-username search locates an account by.
CREATE TABLE account_keys (
    kind    TEXT NOT NULL CHECK (kind IN ('domain', 'icp_domain', 'email_domain')),
    value   TEXT NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    PRIMARY KEY (kind, value)
);
CREATE INDEX account_keys_account ON account_keys (account);

-- An appeal is open until it closes with an outcome; one open appeal per account.
CREATE UNIQUE INDEX appeals_one_open_per_account ON appeals (account) WHERE outcome IS NULL;
