-- Portal sign-in links (POST /v1/portal/sessions): the token is kept only as its hash, like an
-- API key, so a copy of the database cannot be used to sign in.
CREATE TABLE portal_sessions (
    token_hash BLOB PRIMARY KEY,
    account    TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;

-- The attempts a delivery had made before its current set of retries: a recovered delivery
-- starts the retry schedule over (attempts - retry_from), while `attempts` keeps counting
-- every try, as the attempt log does.
ALTER TABLE deliveries ADD COLUMN retry_from INTEGER NOT NULL DEFAULT 0;

-- The operational topics are always in the catalog (API.md, "Operational events").
INSERT INTO topics (name, description, created_at, updated_at)
SELECT column1, column2, CAST(strftime('%s', 'now') AS REAL), CAST(strftime('%s', 'now') AS REAL) FROM (VALUES
    ('gateway.hook.disabled', 'The gateway disabled a hook after persistent failure.'),
    ('gateway.hook.removed', 'A hook''s target answered 410 Gone: the hook was removed.'),
    ('gateway.delivery.exhausted', 'A delivery failed for good: its retries are used up.'),
    ('gateway.test', 'A test event sent to one hook (POST /v1/hooks/{id}/test).')
) WHERE true
ON CONFLICT (name) DO NOTHING;
