-- name: account_ensure
-- Create an account if it does not exist yet.
INSERT OR IGNORE INTO accounts (name, created_at) VALUES (?, ?);

-- name: key_insert
INSERT INTO api_keys (id, hash, role, account, last4, created_at) VALUES (?, ?, ?, ?, ?, ?);

-- name: key_list
SELECT id, role, account, created_at, revoked_at, last4 FROM api_keys ORDER BY created_at, id;

-- name: key_revoke
UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL;

-- name: key_by_id
SELECT id, role, account, created_at, revoked_at, last4 FROM api_keys WHERE id = ?;

-- name: key_by_hash
-- Looked up by hash (an index seek); the caller compares the hash again in constant time.
SELECT id, role, account, created_at, revoked_at, last4, hash FROM api_keys
WHERE hash = ? AND revoked_at IS NULL;

-- name: topic_upsert
INSERT INTO topics (name, description, created_at, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET description = excluded.description, updated_at = excluded.updated_at;

-- name: topic_exists
SELECT 1 FROM topics WHERE name = ?;

-- name: topic_list
SELECT name, description FROM topics ORDER BY name;

-- name: hook_insert
INSERT INTO hooks (id, account, target_url, host, topics, payload, ordered, description, headers,
                   status, secret, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?);

-- name: hook_get
SELECT * FROM hooks WHERE id = ? AND deleted_at IS NULL;

-- name: hook_list_all
SELECT * FROM hooks WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?;

-- name: hook_list_account
SELECT * FROM hooks WHERE deleted_at IS NULL AND account = ? AND id > ? ORDER BY id LIMIT ?;

-- name: hook_index_account
-- What publishing needs to fan an event out: every hook of the account that can still receive,
-- and the admin hooks of every account ("*").
SELECT id, topics, status, host, account FROM hooks
WHERE account IN (?, '*') AND deleted_at IS NULL AND status != 'removed';

-- name: hook_update
-- A hook's changeable settings; a NULL parameter keeps the column as it is (none is nullable).
UPDATE hooks SET target_url = COALESCE(?, target_url), host = COALESCE(?, host),
       topics = COALESCE(?, topics), payload = COALESCE(?, payload),
       ordered = COALESCE(?, ordered), description = COALESCE(?, description),
       headers = COALESCE(?, headers), updated_at = ?
WHERE id = ?;

-- name: hook_delete
-- Its secrets go at once; the row stays until the pruner has removed its deliveries.
UPDATE hooks SET deleted_at = ?, updated_at = ?, secret = '', old_secret = NULL,
       old_secret_expires_at = NULL
WHERE id = ? AND deleted_at IS NULL;

-- name: hook_set_held
-- A hook that is not active holds its pending deliveries out of the due index.
UPDATE deliveries SET held = ? WHERE hook_id = ? AND status = 'pending';

-- name: hook_resume_deliveries
-- Re-activating a disabled hook retries what waited, now.
UPDATE deliveries SET held = 0, next_attempt_at = MIN(next_attempt_at, ?), updated_at = ?
WHERE hook_id = ? AND status = 'pending';

-- name: hook_cancel_deliveries
UPDATE deliveries SET status = 'cancelled', updated_at = ? WHERE hook_id = ? AND status = 'pending';

-- name: hook_fail_deliveries
UPDATE deliveries SET status = 'failed', updated_at = ? WHERE hook_id = ? AND status = 'pending';

-- name: hook_rotate
UPDATE hooks SET old_secret = secret, old_secret_expires_at = ?, secret = ?, updated_at = ?
WHERE id = ? AND deleted_at IS NULL;

-- name: hook_success
-- Only a hook with a streak is written: most batches change nothing, and an unchanged row
-- would still dirty its page in every commit.
-- Rows of (id), many per statement: a batch of attempts to many hooks is one statement.
WITH ids(id) AS (VALUES (?))
UPDATE hooks SET consecutive_failures = 0, failing_since = NULL
WHERE id IN (SELECT id FROM ids) AND (consecutive_failures != 0 OR failing_since IS NOT NULL);

-- name: hook_failures
UPDATE hooks SET consecutive_failures = ?, failing_since = ? WHERE id = ?;

-- name: hook_failure_state
SELECT consecutive_failures, failing_since, status, account, target_url FROM hooks WHERE id = ?;

-- name: hook_set_status
UPDATE hooks SET status = ?, updated_at = ? WHERE id = ?;

-- name: idempotency_get
SELECT response FROM idempotency WHERE account = ? AND key = ? AND created_at > ?;

-- name: idempotency_put
-- Rows of (account, key, response, created_at); see storage/connector.py, execute_rows.
INSERT OR REPLACE INTO idempotency (account, key, response, created_at) VALUES (?, ?, ?, ?);

-- name: idempotency_purge
DELETE FROM idempotency WHERE created_at <= ?;

-- name: sequence_get
SELECT last_sequence FROM accounts WHERE name = ?;

-- name: sequence_set
UPDATE accounts SET last_sequence = ? WHERE name = ?;

-- name: event_insert
-- Rows of (id, account, topic, sequence, data, resource_url, created_at), many per statement
-- (see execute_rows in storage/connector.py).
INSERT INTO events (id, account, topic, sequence, data, resource_url, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: event_get
SELECT id, account, topic, sequence, data, resource_url, created_at FROM events WHERE id = ?;

-- name: event_delivery_counts
-- The deliveries of the event's own account: not those of admin hooks of every account ("*"),
-- which its subscribers must not learn of. Parameters: the event's id, twice.
SELECT status, COUNT(*) FROM deliveries
WHERE event_id = ? AND account = (SELECT account FROM events WHERE id = ?) GROUP BY status;

-- name: delivery_insert
-- Rows of (id, event_id, hook_id, account, topic, sequence, held, next_attempt_at, created_at,
-- updated_at, host), many per statement (see event_insert).
INSERT INTO deliveries (id, event_id, hook_id, account, topic, sequence, held, next_attempt_at,
                        created_at, updated_at, host)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: delivery_get
SELECT id, event_id, hook_id, account, topic, status, attempts, next_attempt_at, last_status_code,
       created_at, updated_at
FROM deliveries WHERE id = ?;

-- name: delivery_list
SELECT id, event_id, hook_id, account, topic, status, attempts, next_attempt_at, last_status_code,
       created_at, updated_at
FROM deliveries WHERE hook_id = ? AND id < ? AND (? IS NULL OR status = ?)
ORDER BY id DESC LIMIT ?;

-- name: delivery_attempts
SELECT at, status_code, error, duration_ms, response_excerpt FROM attempts
WHERE delivery_id = ? ORDER BY at, rowid;

-- name: delivery_retry
-- A manual retry: one more attempt now, whatever the schedule said. Only a failed or delivered
-- delivery gets the single manual attempt (a delivered one is sent once more); a pending one
-- keeps the retries it has left.
UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?,
       manual = CASE WHEN status IN ('failed', 'delivered') THEN 1 ELSE manual END,
       held = (SELECT CASE WHEN h.status = 'active' THEN 0 ELSE 1 END FROM hooks h
               WHERE h.id = deliveries.hook_id)
WHERE id = ? AND status IN ('pending', 'failed', 'delivered');

-- name: claim_candidates
-- Due deliveries, oldest first, skipping hosts that are at their bound. An ordered hook offers
-- only its lowest pending sequence, and nothing while one of its deliveries is claimed.
-- What a delivery needs of its hook comes from memory (the hook store's delivery configs), so
-- the hook is joined only to filter: its columns on every row were half the cost of a claim.
-- The event's time goes as whole microseconds: the claim also travels as JSON
-- (claim_candidates_json), which keeps 15 digits of a REAL, and both ways must give the same
-- value. Three variants follow, written out: keep the four the same but for what they say.
-- The account is the event's (a delivery of an admin hook of every account has "*"); the
-- attempts are those of the current set of retries (a recovered delivery starts over).
SELECT d.id, d.event_id, d.hook_id, e.account, d.topic, d.sequence, d.attempts - d.retry_from,
       d.manual, d.host,
       e.data, e.resource_url, CAST(round(e.created_at * 1000000) AS INTEGER)
FROM deliveries d INDEXED BY deliveries_due
JOIN hooks h ON h.id = d.hook_id
JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.held = 0 AND d.claimed = 0 AND d.next_attempt_at <= ?
  AND h.status = 'active' AND h.deleted_at IS NULL
  AND d.host NOT IN (SELECT value FROM json_each(?))
  AND (h.ordered = 0 OR (
        d.sequence = (SELECT MIN(x.sequence) FROM deliveries x
                      WHERE x.hook_id = d.hook_id AND x.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM deliveries y
                        WHERE y.hook_id = d.hook_id AND y.status = 'pending' AND y.claimed = 1)))
ORDER BY d.next_attempt_at
LIMIT ?;

-- name: claim_candidates_of_host
-- claim_candidates for one host with room (parameters now, host, limit), on the index by host:
-- what a claim past a wall of full hosts' rows runs, host by host.
SELECT d.id, d.event_id, d.hook_id, e.account, d.topic, d.sequence, d.attempts - d.retry_from,
       d.manual, d.host,
       e.data, e.resource_url, CAST(round(e.created_at * 1000000) AS INTEGER)
FROM deliveries d INDEXED BY deliveries_due_by_host
JOIN hooks h ON h.id = d.hook_id
JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.held = 0 AND d.claimed = 0 AND d.next_attempt_at <= ?
  AND h.status = 'active' AND h.deleted_at IS NULL
  AND d.host = ?
  AND (h.ordered = 0 OR (
        d.sequence = (SELECT MIN(x.sequence) FROM deliveries x
                      WHERE x.hook_id = d.hook_id AND x.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM deliveries y
                        WHERE y.hook_id = d.hook_id AND y.status = 'pending' AND y.claimed = 1)))
ORDER BY d.next_attempt_at
LIMIT ?;

-- name: claim_candidates_json
-- claim_candidates as one row holding a JSON array, for a claim run in the database's thread:
-- there a statement step per row would hand the GIL between that thread and the busy event
-- loop once per row. (c9, the event's data, is a BLOB, which JSON cannot hold: as text it is
-- the JSON itself.) On the loop the plain rows are cheaper (no JSON built and parsed again).
WITH claim(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11) AS (
SELECT d.id, d.event_id, d.hook_id, e.account, d.topic, d.sequence, d.attempts - d.retry_from,
       d.manual, d.host,
       e.data, e.resource_url, CAST(round(e.created_at * 1000000) AS INTEGER)
FROM deliveries d INDEXED BY deliveries_due
JOIN hooks h ON h.id = d.hook_id
JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.held = 0 AND d.claimed = 0 AND d.next_attempt_at <= ?
  AND h.status = 'active' AND h.deleted_at IS NULL
  AND d.host NOT IN (SELECT value FROM json_each(?))
  AND (h.ordered = 0 OR (
        d.sequence = (SELECT MIN(x.sequence) FROM deliveries x
                      WHERE x.hook_id = d.hook_id AND x.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM deliveries y
                        WHERE y.hook_id = d.hook_id AND y.status = 'pending' AND y.claimed = 1)))
ORDER BY d.next_attempt_at
LIMIT ?
)
SELECT json_group_array(json_array(c0, c1, c2, c3, c4, c5, c6, c7, c8, CAST(c9 AS TEXT), c10, c11)) FROM claim;

-- name: claim_candidates_of_host_json
-- claim_candidates_of_host as one JSON row (see claim_candidates_json).
WITH claim(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11) AS (
SELECT d.id, d.event_id, d.hook_id, e.account, d.topic, d.sequence, d.attempts - d.retry_from,
       d.manual, d.host,
       e.data, e.resource_url, CAST(round(e.created_at * 1000000) AS INTEGER)
FROM deliveries d INDEXED BY deliveries_due_by_host
JOIN hooks h ON h.id = d.hook_id
JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.held = 0 AND d.claimed = 0 AND d.next_attempt_at <= ?
  AND h.status = 'active' AND h.deleted_at IS NULL
  AND d.host = ?
  AND (h.ordered = 0 OR (
        d.sequence = (SELECT MIN(x.sequence) FROM deliveries x
                      WHERE x.hook_id = d.hook_id AND x.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM deliveries y
                        WHERE y.hook_id = d.hook_id AND y.status = 'pending' AND y.claimed = 1)))
ORDER BY d.next_attempt_at
LIMIT ?
)
SELECT json_group_array(json_array(c0, c1, c2, c3, c4, c5, c6, c7, c8, CAST(c9 AS TEXT), c10, c11)) FROM claim;

-- name: due_hosts
-- Every host with rows in the due index and its earliest one: one index seek per host (a skip
-- scan), not a read of every row.
WITH RECURSIVE hosts(host) AS (
    SELECT MIN(host) FROM deliveries INDEXED BY deliveries_due_by_host
    WHERE status = 'pending' AND held = 0 AND claimed = 0
    UNION ALL
    SELECT (SELECT MIN(d.host) FROM deliveries d INDEXED BY deliveries_due_by_host
            WHERE d.status = 'pending' AND d.held = 0 AND d.claimed = 0 AND d.host > hosts.host)
    FROM hosts WHERE hosts.host IS NOT NULL
)
SELECT host, (SELECT MIN(d.next_attempt_at) FROM deliveries d INDEXED BY deliveries_due_by_host
              WHERE d.status = 'pending' AND d.held = 0 AND d.claimed = 0 AND d.host = hosts.host)
FROM hosts WHERE host IS NOT NULL;

-- name: due_of_host
-- How many of a host's rows are due, counting no further than the given cap.
SELECT COUNT(*) FROM (
    SELECT 1 FROM deliveries INDEXED BY deliveries_due_by_host
    WHERE status = 'pending' AND held = 0 AND claimed = 0 AND host = ? AND next_attempt_at <= ?
    LIMIT ?);

-- name: hook_delivery_config
-- What a delivery needs of its hooks; rows of (id) as a JSON array.
SELECT id, target_url, payload, headers, secret, old_secret, old_secret_expires_at, ordered
FROM hooks WHERE id IN (SELECT value FROM json_each(?));

-- name: claim_mark
-- Rows of (id), many per statement.
WITH ids(id) AS (VALUES (?))
UPDATE deliveries SET claimed = 1 WHERE id IN (SELECT id FROM ids);

-- name: claims_release
UPDATE deliveries SET claimed = 0 WHERE id = ?;

-- name: claims_reset
-- Start-up: whatever a previous process held is handed back.
UPDATE deliveries SET claimed = 0 WHERE claimed = 1;

-- name: next_due
-- The next moment a row falls due after the given one. Rows due earlier but left unclaimed wait
-- on a bound (a full host, an ordered hook's earlier event), and a wake-up frees them.
SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND held = 0 AND claimed = 0
AND next_attempt_at > ?;

-- name: due_backlog
SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND held = 0 AND claimed = 0
AND next_attempt_at <= ?;

-- name: hooks_by_status
-- For the metrics: hooks (not deleted) by status.
SELECT status, COUNT(*) FROM hooks WHERE deleted_at IS NULL GROUP BY status;

-- name: pending_count
-- For the metrics: every pending delivery, due or not (the deliveries_pending_by_hook index
-- holds exactly these rows).
SELECT COUNT(*) FROM deliveries WHERE status = 'pending';

-- name: attempt_insert
-- Rows of (delivery_id, at, status_code, error, duration_ms, response_excerpt), many per
-- statement (see execute_rows in storage/connector.py).
INSERT INTO attempts (delivery_id, at, status_code, error, duration_ms, response_excerpt)
VALUES (?, ?, ?, ?, ?, ?);

-- name: delivery_record
-- The outcome of attempts: rows of (id, status_code, next_attempt_at, status, now), many per
-- statement. A row cancelled or failed meanwhile keeps that status.
WITH r(id, code, next_at, status, now) AS (VALUES (?, ?, ?, ?, ?))
UPDATE deliveries
SET claimed = 0, attempts = attempts + 1, manual = 0, last_status_code = r.code,
    updated_at = r.now, next_attempt_at = r.next_at,
    status = CASE WHEN deliveries.status = 'pending' THEN r.status ELSE deliveries.status END
FROM r
WHERE deliveries.id = r.id;

-- name: event_list
-- Events newest first (ids sort by time): (before id, lowest id, topic, topic, since, since,
-- until, until, limit); a NULL filter is no filter. The lowest id is the first `since` allows
-- (an id begins with the millisecond it was made in, never before its row's created_at, see
-- models.first_id_at), so the primary key bounds the walk too.
SELECT id, account, topic, sequence, data, resource_url, created_at FROM events
WHERE id < ? AND id >= ? AND (? IS NULL OR topic = ?) AND (? IS NULL OR created_at >= ?)
  AND (? IS NULL OR created_at < ?)
ORDER BY id DESC LIMIT ?;

-- name: event_list_account
-- event_list for one account (the first parameter). No index by account: publishing would
-- pay for it on every event, and the primary key read newest first finds a busy account's
-- page at once.
SELECT id, account, topic, sequence, data, resource_url, created_at FROM events
WHERE account = ? AND id < ? AND id >= ? AND (? IS NULL OR topic = ?) AND (? IS NULL OR created_at >= ?)
  AND (? IS NULL OR created_at < ?)
ORDER BY id DESC LIMIT ?;

-- name: prune_deliveries_pick
-- Final deliveries made before the cutoff (ids sort by time: the primary key's range) and not
-- changed since, past the cursor: (after id, before id, cutoff, limit). A claimed row is in
-- flight and waits for its record.
SELECT id FROM deliveries
WHERE id > ? AND id < ? AND status != 'pending' AND claimed = 0 AND updated_at <= ?
ORDER BY id LIMIT ?;

-- name: prune_deleted_hooks_deliveries_pick
-- The deliveries of deleted hooks, whatever their age (deleting cancelled the pending ones).
SELECT d.id FROM hooks h JOIN deliveries d ON d.hook_id = h.id
WHERE h.deleted_at IS NOT NULL AND d.status != 'pending' AND d.claimed = 0
LIMIT ?;

-- name: prune_attempts
-- The attempts of deliveries given as a JSON array of ids.
DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?));

-- name: prune_deliveries
-- Deliveries given as a JSON array of ids.
DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?));

-- name: prune_events_pick
-- Events made before the cutoff with no delivery left (so none pending), past the cursor:
-- (after id, before id, cutoff, limit).
SELECT e.id FROM events e
WHERE e.id > ? AND e.id < ? AND e.created_at <= ?
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
ORDER BY e.id LIMIT ?;

-- name: prune_events
-- Events given as a JSON array of ids.
DELETE FROM events WHERE id IN (SELECT value FROM json_each(?));

-- name: prune_hooks
-- Deleted hooks none of whose deliveries is left.
DELETE FROM hooks WHERE deleted_at IS NOT NULL
AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.hook_id = hooks.id);

-- name: secrets_expire
-- A rotated-out secret past its window is cleared.
UPDATE hooks SET old_secret = NULL, old_secret_expires_at = NULL
WHERE old_secret IS NOT NULL AND old_secret_expires_at <= ?;

-- ==== Portal sessions, recovery and operational events (issue 16) ====

-- name: portal_session_insert
INSERT INTO portal_sessions (token_hash, account, expires_at, created_at) VALUES (?, ?, ?, ?);

-- name: portal_session_get
-- Looked up by hash; the caller compares the hash again in constant time.
SELECT token_hash, account, expires_at FROM portal_sessions WHERE token_hash = ?;

-- name: portal_session_delete
DELETE FROM portal_sessions WHERE token_hash = ?;

-- name: portal_session_purge
DELETE FROM portal_sessions WHERE expires_at <= ?;

-- name: event_list_counts
-- The delivery counts of many events (their ids as a JSON array), of each event's own account
-- as in event_delivery_counts.
SELECT d.event_id, d.status, COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.event_id IN (SELECT value FROM json_each(?)) AND d.account = e.account
GROUP BY d.event_id, d.status;

-- name: recover_select
-- The next of a hook's deliveries to recover, in their original order: created in
-- [since, until), status among the JSON array given, after the last id of the previous batch.
SELECT id FROM deliveries INDEXED BY deliveries_by_hook
WHERE hook_id = ? AND id > ? AND created_at >= ? AND created_at < ?
  AND status IN (SELECT value FROM json_each(?))
ORDER BY id LIMIT ?;

-- name: recover_update
-- Back to pending with a fresh set of retries (the schedule counts from retry_from); held when
-- the hook is not active. Parameters: now twice, held, ids as a JSON array.
UPDATE deliveries SET status = 'pending', manual = 0, claimed = 0, retry_from = attempts,
       next_attempt_at = ?, updated_at = ?, held = ?
WHERE id IN (SELECT value FROM json_each(?));

-- name: delivery_exhausted
-- What gateway.delivery.exhausted says about a delivery that has just failed for good.
SELECT id, hook_id, event_id, topic, attempts, last_status_code, account, status
FROM deliveries WHERE id = ?;

-- name: hook_route
-- The hook a test event goes to: its delivery row's held flag, host and account.
SELECT id, status, host, account FROM hooks WHERE id = ? AND deleted_at IS NULL;
