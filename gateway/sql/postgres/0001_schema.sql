-- The SQLite schema's end state (sql/0001-0004) for PostgreSQL, plus what several processes on
-- one database need: claims as leases (claimed_until, claimed_by) instead of a claimed flag that
-- a starting process clears, and a per-account version of its hooks (hooks_version) that
-- publishing reads in the same statement that takes the account's sequence numbers.
CREATE TABLE accounts (
    name          TEXT PRIMARY KEY,
    created_at    DOUBLE PRECISION NOT NULL,
    last_sequence BIGINT NOT NULL DEFAULT 0,
    -- Bumped in every transaction that changes one of the account's hooks: a process whose
    -- routing index was read at another version reads it again before it routes.
    hooks_version BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    hash       BYTEA NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'subscriber')),
    account    TEXT REFERENCES accounts(name),
    last4      TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);

CREATE TABLE topics (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
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
    old_secret_expires_at DOUBLE PRECISION,
    created_at            DOUBLE PRECISION NOT NULL,
    updated_at            DOUBLE PRECISION NOT NULL,
    deleted_at            DOUBLE PRECISION,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    failing_since         DOUBLE PRECISION
);

CREATE INDEX hooks_by_account ON hooks(account, id) WHERE deleted_at IS NULL;

CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    account      TEXT NOT NULL,
    topic        TEXT NOT NULL,
    sequence     BIGINT NOT NULL,
    data         BYTEA NOT NULL,
    resource_url TEXT,
    created_at   DOUBLE PRECISION NOT NULL
);

CREATE TABLE idempotency (
    account    TEXT NOT NULL,
    key        TEXT NOT NULL,
    response   BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, key)
);

-- held: the hook is not active (paused, disabled), so the row waits outside the due index.
-- claimed_until: a process holds the row until then (the database's clock, seconds since the
-- epoch) and renews it while it works; 0 when nobody does. A process that dies stops renewing,
-- and its rows fall due again once the lease runs out. claimed_by: which process holds it, so
-- one process never hands back or renews another's claim.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    hook_id          TEXT NOT NULL,
    account          TEXT NOT NULL,
    topic            TEXT NOT NULL,
    sequence         BIGINT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    held             INTEGER NOT NULL DEFAULT 0,
    claimed_until    DOUBLE PRECISION NOT NULL DEFAULT 0,
    claimed_by       TEXT,
    manual           INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION NOT NULL,
    last_status_code INTEGER,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    host             TEXT NOT NULL DEFAULT ''
);

-- Claimed rows stay in the due index (a lease is a time, not a state): a claim walks past the
-- rows in flight, at most max_in_flight per process.
CREATE INDEX deliveries_due ON deliveries(next_attempt_at, host)
    WHERE status = 'pending' AND held = 0;
CREATE INDEX deliveries_due_by_host ON deliveries(host, next_attempt_at)
    WHERE status = 'pending' AND held = 0;
CREATE INDEX deliveries_by_hook ON deliveries(hook_id, id);
CREATE INDEX deliveries_pending_by_hook ON deliveries(hook_id, sequence) WHERE status = 'pending';
CREATE INDEX deliveries_claimed ON deliveries(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX deliveries_by_event ON deliveries(event_id);

CREATE TABLE attempts (
    id               BIGSERIAL PRIMARY KEY,
    delivery_id      TEXT NOT NULL,
    at               DOUBLE PRECISION NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    duration_ms      DOUBLE PRECISION NOT NULL,
    response_excerpt TEXT NOT NULL DEFAULT ''
);

CREATE INDEX attempts_by_delivery ON attempts(delivery_id, at);

-- A hook moved to another host takes its pending deliveries along (as on SQLite).
CREATE FUNCTION deliveries_follow_hook_host() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deliveries SET host = NEW.host WHERE hook_id = NEW.id AND status = 'pending';
    RETURN NEW;
END $$;

CREATE TRIGGER deliveries_follow_hook_host AFTER UPDATE OF host ON hooks
FOR EACH ROW WHEN (NEW.host IS DISTINCT FROM OLD.host)
EXECUTE FUNCTION deliveries_follow_hook_host();
