-- Events, their deliveries (one per matching hook), the attempt log and idempotency keys.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    account      TEXT NOT NULL,
    topic        TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    data         BLOB NOT NULL,
    resource_url TEXT,
    created_at   REAL NOT NULL
);

CREATE TABLE idempotency (
    account    TEXT NOT NULL,
    key        TEXT NOT NULL,
    response   BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;

-- held: the hook is not active (paused, disabled), so the row waits without being scanned.
-- claimed: the delivery loop of this process holds the row; cleared on start-up.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    hook_id          TEXT NOT NULL,
    account          TEXT NOT NULL,
    topic            TEXT NOT NULL,
    sequence         INTEGER NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    held             INTEGER NOT NULL DEFAULT 0,
    claimed          INTEGER NOT NULL DEFAULT 0,
    manual           INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_status_code INTEGER,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);

CREATE INDEX deliveries_due ON deliveries(next_attempt_at)
    WHERE status = 'pending' AND held = 0 AND claimed = 0;
CREATE INDEX deliveries_by_hook ON deliveries(hook_id, id);
CREATE INDEX deliveries_pending_by_hook ON deliveries(hook_id, sequence) WHERE status = 'pending';
CREATE INDEX deliveries_claimed ON deliveries(claimed) WHERE claimed = 1;
CREATE INDEX deliveries_by_event ON deliveries(event_id);

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    at               REAL NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    duration_ms      REAL NOT NULL,
    response_excerpt TEXT NOT NULL DEFAULT ''
);

CREATE INDEX attempts_by_delivery ON attempts(delivery_id, at);
