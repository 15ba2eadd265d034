-- Portal sign-in links (POST /v1/portal/sessions), as SQLite's sql/0006: the token is kept only
-- as its hash, like an API key, so a copy of the database cannot be used to sign in.
CREATE TABLE portal_sessions (
    token_hash BYTEA PRIMARY KEY,
    account    TEXT NOT NULL REFERENCES accounts(name),
    expires_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX portal_sessions_by_expiry ON portal_sessions(expires_at);
