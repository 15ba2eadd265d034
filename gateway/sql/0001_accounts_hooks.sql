-- Accounts, API keys, the topic catalog and hooks (subscriptions).
CREATE TABLE accounts (
    name          TEXT PRIMARY KEY,
    created_at    REAL NOT NULL,
    last_sequence INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'subscriber')),
    account    TEXT REFERENCES accounts(name),
    last4      TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);

CREATE TABLE topics (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE hooks (
    id                    TEXT PRIMARY KEY,
    account               TEXT NOT NULL REFERENCES accounts(name),
    target_url            TEXT NOT NULL,
    host                  TEXT NOT NULL,
    topics                TEXT NOT NULL,
    payload               TEXT NOT NULL DEFAULT 'full',
    ordered               INTEGER NOT NULL DEFAULT 0,
    description           TEXT NOT NULL DEFAULT '',
    headers               TEXT NOT NULL DEFAULT '{}',
    status                TEXT NOT NULL DEFAULT 'active',
    secret                TEXT NOT NULL,
    old_secret            TEXT,
    old_secret_expires_at REAL,
    created_at            REAL NOT NULL,
    updated_at            REAL NOT NULL,
    deleted_at            REAL,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    failing_since         REAL
);

CREATE INDEX hooks_by_account ON hooks(account, id) WHERE deleted_at IS NULL;
