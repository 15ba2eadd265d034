-- Named queries of the PostgreSQL backend (gateway/storage/postgres). Parameters are $1, $2, …; a batch
-- statement takes one array per column and unnests them, so a batch is one statement and one
-- round trip whatever its size.

-- name: accounts_ensure
-- Rows of (name) as an array; accounts that do not exist yet are created.
INSERT INTO accounts (name, created_at) SELECT unnest($1::text[]), $2
ON CONFLICT (name) DO NOTHING;

-- name: accounts_lock
-- Publishing: the accounts' counter rows, locked until the commit, in name order so two
-- publishers locking several accounts cannot deadlock. Every publisher of an account, in every
-- process, waits here for the one before it: sequence numbers are taken and committed in one
-- order, gap-free (a rolled-back publish hands its numbers back with the rollback).
SELECT name, last_sequence, hooks_version FROM accounts
WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE;

-- name: accounts_take
-- Publishing without idempotency keys, where each account's count of new events is known up
-- front: its counter row created or locked (the upsert locks it until the commit, in name
-- order) and moved on by that count in one statement. Columns (name, count) as arrays; the
-- answer is each account's last sequence after the batch, and its hooks_version.
INSERT INTO accounts (name, created_at, last_sequence)
SELECT u.name, $3, u.n FROM unnest($1::text[], $2::bigint[]) AS u(name, n) ORDER BY u.name
ON CONFLICT (name) DO UPDATE SET last_sequence = accounts.last_sequence + excluded.last_sequence
RETURNING name, last_sequence, hooks_version;

-- name: accounts_set_sequence
UPDATE accounts a SET last_sequence = u.seq
FROM unnest($1::text[], $2::bigint[]) AS u(name, seq) WHERE a.name = u.name;

-- name: account_hooks_changed
-- In every transaction that changes a hook of the account: publishers in every process see
-- the new version when they lock the account, and route with the hooks read again.
UPDATE accounts SET hooks_version = hooks_version + 1 WHERE name = $1;

-- name: key_insert
INSERT INTO api_keys (id, hash, role, account, last4, created_at) VALUES ($1, $2, $3, $4, $5, $6);

-- name: key_list
SELECT id, role, account, created_at, revoked_at, last4 FROM api_keys ORDER BY created_at, id;

-- name: key_revoke
UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL;

-- name: key_by_id
SELECT id, role, account, created_at, revoked_at, last4 FROM api_keys WHERE id = $1;

-- name: key_by_hash
-- Looked up by hash (an index seek); the caller compares the hash again in constant time.
SELECT id, role, account, created_at, revoked_at, last4, hash FROM api_keys
WHERE hash = $1 AND revoked_at IS NULL;

-- name: topic_upsert
-- xmax is 0 on a row this statement inserted, not on one it updated: whether it was new.
INSERT INTO topics (name, description, created_at, updated_at) VALUES ($1, $2, $3, $3)
ON CONFLICT (name) DO UPDATE SET description = excluded.description, updated_at = excluded.updated_at
RETURNING (xmax = 0) AS created;

-- name: topic_list
SELECT name, description FROM topics ORDER BY name;

-- name: hook_insert
INSERT INTO hooks (id, account, target_url, host, topics, payload, ordered, description, headers,
                   status, secret, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $12);

-- name: hook_get
SELECT * FROM hooks WHERE id = $1 AND deleted_at IS NULL;

-- name: hook_get_locked
SELECT * FROM hooks WHERE id = $1 AND deleted_at IS NULL FOR UPDATE;

-- name: hook_list_all
SELECT * FROM hooks WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2;

-- name: hook_list_account
SELECT * FROM hooks WHERE deleted_at IS NULL AND account = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: hooks_by_status
-- For the metrics: hooks by status, deleted ones left out.
SELECT status, COUNT(*) FROM hooks WHERE deleted_at IS NULL GROUP BY status;

-- name: pending_count
-- For the metrics: every pending delivery, due or not.
SELECT COUNT(*) FROM deliveries WHERE status = 'pending';

-- name: hook_index_account
-- What publishing needs to fan an event out: every hook of the account that can still receive.
SELECT id, topics, status, host FROM hooks
WHERE account = $1 AND deleted_at IS NULL AND status != 'removed';

-- name: hook_update
-- A hook's changeable settings; a NULL parameter keeps the column as it is (none is nullable).
UPDATE hooks SET target_url = COALESCE($1, target_url), host = COALESCE($2, host),
       topics = COALESCE($3, topics), payload = COALESCE($4, payload),
       ordered = COALESCE($5::int, ordered), description = COALESCE($6, description),
       headers = COALESCE($7, headers), updated_at = $8
WHERE id = $9;

-- name: hook_delete
-- Its secrets go at once; the row stays until the pruner has removed its deliveries.
UPDATE hooks SET deleted_at = $1, updated_at = $2, secret = '', old_secret = NULL,
       old_secret_expires_at = NULL
WHERE id = $3 AND deleted_at IS NULL;

-- name: hook_set_held
-- A hook that is not active holds its pending deliveries out of the due index.
UPDATE deliveries SET held = $1 WHERE hook_id = $2 AND status = 'pending';

-- name: hook_resume_deliveries
-- Re-activating a disabled hook retries what waited, now.
UPDATE deliveries SET held = 0, next_attempt_at = LEAST(next_attempt_at, $1), updated_at = $2
WHERE hook_id = $3 AND status = 'pending';

-- name: hook_cancel_deliveries
UPDATE deliveries SET status = 'cancelled', updated_at = $1 WHERE hook_id = $2 AND status = 'pending';

-- name: hook_fail_deliveries
UPDATE deliveries SET status = 'failed', updated_at = $1 WHERE hook_id = $2 AND status = 'pending';

-- name: hook_rotate
UPDATE hooks SET old_secret = secret, old_secret_expires_at = $1, secret = $2, updated_at = $3
WHERE id = $4 AND deleted_at IS NULL;

-- name: hook_success
-- Only a hook with a streak is written (an unchanged row would still be a new row version).
UPDATE hooks SET consecutive_failures = 0, failing_since = NULL
WHERE id = ANY($1::text[]) AND (consecutive_failures != 0 OR failing_since IS NOT NULL);

-- name: hook_failures
UPDATE hooks SET consecutive_failures = $1, failing_since = $2 WHERE id = $3;

-- name: hook_set_status
UPDATE hooks SET status = $1, updated_at = $2 WHERE id = $3;

-- name: idempotency_get
-- Rows of (account, key) as two arrays.
SELECT i.account, i.key, i.response FROM idempotency i
JOIN unnest($1::text[], $2::text[]) AS u(account, key) ON i.account = u.account AND i.key = u.key
WHERE i.created_at > $3;

-- name: idempotency_put
INSERT INTO idempotency (account, key, response, created_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::float8[])
ON CONFLICT (account, key) DO UPDATE SET response = excluded.response, created_at = excluded.created_at;

-- name: idempotency_purge
DELETE FROM idempotency WHERE created_at <= $1;

-- name: event_insert
-- Columns (id, account, topic, sequence, data, resource_url, created_at) as arrays.
INSERT INTO events (id, account, topic, sequence, data, resource_url, created_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[], $6::text[],
                     $7::float8[]);

-- name: publish_rows
-- A publish's events and deliveries in one statement (event_insert's and delivery_insert's
-- columns, $1-$7 and $8-$16), and the wake-up for the other processes when $17 is not null:
-- one round trip where three were.
WITH ev AS (
    INSERT INTO events (id, account, topic, sequence, data, resource_url, created_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[],
                         $6::text[], $7::float8[])
), dl AS (
    INSERT INTO deliveries (id, event_id, hook_id, account, topic, sequence, held,
                            next_attempt_at, created_at, updated_at, host)
    SELECT u.id, u.event_id, u.hook_id, u.account, u.topic, u.sequence, u.held, $15, $15, $15,
           u.host
    FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
                $14::int[], $16::text[]) AS u(id, event_id, hook_id, account, topic, sequence,
                                              held, host)
)
SELECT pg_notify('gateway', $17) WHERE $17::text IS NOT NULL;

-- name: event_get
SELECT id, account, topic, sequence, data, resource_url, created_at FROM events WHERE id = $1;

-- name: event_list
-- Events newest first (ids sort by time): (before id, account, topic, since, until, limit); a
-- NULL filter is no filter.
SELECT id, account, topic, sequence, data, resource_url, created_at FROM events
WHERE id < $1 AND ($2::text IS NULL OR account = $2) AND ($3::text IS NULL OR topic = $3)
  AND ($4::float8 IS NULL OR created_at >= $4) AND ($5::float8 IS NULL OR created_at < $5)
ORDER BY id DESC LIMIT $6;

-- name: event_delivery_counts
SELECT status, COUNT(*) FROM deliveries WHERE event_id = $1 GROUP BY status;

-- name: delivery_insert
-- Columns (id, event_id, hook_id, account, topic, sequence, held, next_attempt_at, created_at,
-- updated_at, host) as arrays; next_attempt_at, created_at and updated_at are the one $8.
INSERT INTO deliveries (id, event_id, hook_id, account, topic, sequence, held, next_attempt_at,
                        created_at, updated_at, host)
SELECT u.id, u.event_id, u.hook_id, u.account, u.topic, u.sequence, u.held, $8, $8, $8, u.host
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[],
            $9::text[]) AS u(id, event_id, hook_id, account, topic, sequence, held, host);

-- name: delivery_get
SELECT id, event_id, hook_id, account, topic, status, attempts, next_attempt_at, last_status_code,
       created_at, updated_at
FROM deliveries WHERE id = $1;

-- name: delivery_list
SELECT id, event_id, hook_id, account, topic, status, attempts, next_attempt_at, last_status_code,
       created_at, updated_at
FROM deliveries WHERE hook_id = $1 AND id < $2 AND ($3::text IS NULL OR status = $3)
ORDER BY id DESC LIMIT $4;

-- name: delivery_attempts
SELECT at, status_code, error, duration_ms, response_excerpt FROM attempts
WHERE delivery_id = $1 ORDER BY at, id;

-- name: delivery_retry
-- A manual retry: one more attempt now, whatever the schedule said. Only a failed or delivered
-- delivery gets the single manual attempt (a delivered one is sent once more); a pending one
-- keeps the retries it has left.
UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $2,
       manual = CASE WHEN status IN ('failed', 'delivered') THEN 1 ELSE manual END,
       held = (SELECT CASE WHEN h.status = 'active' THEN 0 ELSE 1 END FROM hooks h
               WHERE h.id = deliveries.hook_id)
WHERE id = $3 AND status IN ('pending', 'failed', 'delivered');

-- name: claim_candidates
-- Due deliveries, oldest first, skipping hosts at their bound, with what an attempt needs of the
-- hook and the event. A row is free when its lease has run out (the database's clock: one clock for every
-- process, on whatever machine).
-- Locked, skipping rows another process is claiming right now: two processes never take one
-- row. An ordered hook offers only its lowest pending sequence, and nothing while any of its
-- deliveries is under a lease, in this process or another: one in flight per hook, in order.
-- The row's own conditions are checked again on the locked version (READ COMMITTED), so a row
-- claimed and committed by another process since this statement's snapshot is passed over.
-- The attempts are those of the current set of retries (a recovered delivery starts over).
SELECT d.id, d.event_id, d.hook_id, d.account, d.topic, d.sequence, d.attempts - d.retry_from,
       d.manual, d.host,
       e.data, e.resource_url, e.created_at,
       h.target_url, h.payload, h.headers, h.secret, h.old_secret, h.old_secret_expires_at,
       h.ordered
FROM deliveries d
JOIN hooks h ON h.id = d.hook_id
JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.held = 0 AND d.next_attempt_at <= $1 AND d.claimed_until < EXTRACT(EPOCH FROM now())
  AND h.status = 'active' AND h.deleted_at IS NULL
  AND d.host <> ALL($2::text[])
  AND (h.ordered = 0 OR (
        d.sequence = (SELECT MIN(x.sequence) FROM deliveries x
                      WHERE x.hook_id = d.hook_id AND x.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM deliveries y
                        WHERE y.hook_id = d.hook_id AND y.status = 'pending'
                          AND y.claimed_until >= EXTRACT(EPOCH FROM now()))))
ORDER BY d.next_attempt_at
LIMIT $3
FOR UPDATE OF d SKIP LOCKED;

-- name: hooks_lock
-- The hooks of a batch of attempts with a failure among them, locked in id order before their
-- streaks are read and written: two processes recording for the same hooks wait, never deadlock.
SELECT id, consecutive_failures, failing_since, status, account FROM hooks
WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE;

-- name: claim_mark
-- The rows taken, leased to this process ($3) for $2 seconds from the claim's transaction.
UPDATE deliveries SET claimed_until = EXTRACT(EPOCH FROM now()) + $2, claimed_by = $3
WHERE id = ANY($1::text[]);

-- name: claims_renew
-- This process is alive and still works on these rows: their lease runs on.
UPDATE deliveries SET claimed_until = EXTRACT(EPOCH FROM clock_timestamp()) + $3
WHERE id = ANY($1::text[]) AND claimed_by = $2 AND status = 'pending';

-- name: claims_release
-- Only this process's own claims: one whose lease ran out may be another's by now.
UPDATE deliveries SET claimed_until = 0, claimed_by = NULL
WHERE id = ANY($1::text[]) AND claimed_by = $2;

-- name: next_due
-- The next moment a free row falls due after the given one.
SELECT MIN(next_attempt_at) FROM deliveries
WHERE status = 'pending' AND held = 0 AND next_attempt_at > $1
  AND claimed_until < EXTRACT(EPOCH FROM clock_timestamp());

-- name: due_backlog
SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND held = 0 AND next_attempt_at <= $1
AND claimed_until < EXTRACT(EPOCH FROM clock_timestamp());

-- name: delivery_record
-- The outcome of attempts, with the attempts appended in the same statement: columns
-- (id, status_code, next_attempt_at, status) as arrays, $5 now, $6 this process, then the
-- attempts' (at, error, duration_ms, response_excerpt) as arrays $7-$10 (the id and status
-- code are the delivery's). A row cancelled or failed meanwhile keeps that status; a lease is
-- cleared only if it is still this process's (after a lease ran out another process may hold
-- the row).
WITH a AS (
    INSERT INTO attempts (delivery_id, at, status_code, error, duration_ms, response_excerpt)
    SELECT * FROM unnest($1::text[], $7::float8[], $2::int[], $8::text[], $9::float8[],
                         $10::text[])
)
UPDATE deliveries d
SET attempts = d.attempts + 1, manual = 0, last_status_code = r.code,
    updated_at = $5, next_attempt_at = r.next_at,
    status = CASE WHEN d.status = 'pending' THEN r.status ELSE d.status END,
    claimed_until = CASE WHEN d.claimed_by = $6 THEN 0 ELSE d.claimed_until END,
    claimed_by = CASE WHEN d.claimed_by = $6 THEN NULL ELSE d.claimed_by END
FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[]) AS r(id, code, next_at, status)
WHERE d.id = r.id;

-- name: event_list_counts
-- The delivery counts of many events (their ids as an array): (event id, status, count).
SELECT event_id, status, COUNT(*) FROM deliveries WHERE event_id = ANY($1::text[])
GROUP BY event_id, status;

-- name: portal_session_insert
INSERT INTO portal_sessions (token_hash, account, expires_at, created_at) VALUES ($1, $2, $3, $4);

-- name: portal_session_get
-- Looked up by hash; the caller compares the hash again in constant time.
SELECT token_hash, account, expires_at FROM portal_sessions WHERE token_hash = $1;

-- name: portal_session_delete
DELETE FROM portal_sessions WHERE token_hash = $1;

-- name: portal_session_purge
DELETE FROM portal_sessions WHERE expires_at <= $1;

-- The portal's read-only aggregates (storage/postgres/views.py), SQLite's sql/views.sql in
-- PostgreSQL's words. Buckets are floor((at - start) / step): at >= start, so the same as
-- SQLite's truncating CAST.

-- name: portal_hook_health
-- Attempts per hook and time bucket, delivered (2xx) against not: (start, step, hook ids, the
-- lowest delivery id of interest).
SELECT d.hook_id, floor((a.at - $1) / $2)::int AS bucket,
       COUNT(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS ok,
       COUNT(*) FILTER (WHERE a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
           AS failed
FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
WHERE d.hook_id = ANY($3::text[]) AND d.id >= $4 AND a.at >= $1
GROUP BY d.hook_id, bucket;

-- name: portal_hook_last_error
-- Each hook's latest failed attempt: (hook ids, the lowest delivery id of interest).
SELECT DISTINCT ON (d.hook_id) d.hook_id, a.at, a.status_code, a.error
FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
WHERE d.hook_id = ANY($1::text[]) AND d.id >= $2
  AND (a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
ORDER BY d.hook_id, a.at DESC, a.id DESC;

-- name: portal_attempts_per_bucket
-- Attempts of every hook per time bucket among the latest $3 attempts: (start, step, rows).
SELECT floor((at - $1) / $2)::int AS bucket,
       COUNT(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS ok,
       COUNT(*) FILTER (WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299)
           AS failed
FROM attempts
WHERE id > (SELECT COALESCE(MAX(id), 0) FROM attempts) - $3 AND at >= $1
GROUP BY bucket;

-- name: portal_backlog_by_host
-- Pending deliveries per callback host not under a lease, the largest first: (due before,
-- limit).
SELECT host, COUNT(*) AS waiting, COUNT(*) FILTER (WHERE next_attempt_at <= $1) AS due
FROM deliveries
WHERE status = 'pending' AND held = 0 AND claimed_until < EXTRACT(EPOCH FROM clock_timestamp())
GROUP BY host ORDER BY waiting DESC, host LIMIT $2;

-- name: portal_troubled_hooks
-- Hooks disabled, removed or failing now, the longest failing first: (limit).
SELECT * FROM hooks
WHERE deleted_at IS NULL AND (status IN ('disabled', 'removed') OR consecutive_failures > 0)
ORDER BY status = 'active', COALESCE(failing_since, updated_at), id LIMIT $1;

-- name: portal_accounts
-- Every account with its hooks (not deleted) counted.
SELECT a.name,
       (SELECT COUNT(*) FROM hooks h WHERE h.account = a.name AND h.deleted_at IS NULL) AS hooks
FROM accounts a ORDER BY a.name LIMIT $1;

-- name: hook_route
-- The hook a recovery goes to: whether it is active (else its rows wait held).
SELECT id, status, host, account FROM hooks WHERE id = $1 AND deleted_at IS NULL;

-- name: recover_select
-- The next of a hook's deliveries to recover, in their original order: created in
-- [since, until), status among the array given, after the last id of the previous batch.
SELECT id FROM deliveries
WHERE hook_id = $1 AND id > $2 AND created_at >= $3 AND created_at < $4
  AND status = ANY($5::text[])
ORDER BY id LIMIT $6;

-- name: recover_update
-- Back to pending with a fresh set of retries (the schedule counts from retry_from), no lease;
-- held when the hook is not active. Parameters: now twice, held, ids.
UPDATE deliveries SET status = 'pending', manual = 0, claimed_until = 0, claimed_by = NULL,
       retry_from = attempts, next_attempt_at = $1, updated_at = $2, held = $3
WHERE id = ANY($4::text[]);
