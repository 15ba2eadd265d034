-- Read-only aggregates behind the portal's charts and operator pages (storage/views.py).
-- Each is bounded by an index: deliveries by their time-sortable id, attempts by rowid.

-- name: portal_hook_health
-- Attempts per hook and time bucket, delivered (2xx) against not: (start, step, hook ids as a
-- JSON array, the lowest delivery id of interest).
SELECT d.hook_id, CAST((a.at - ?1) / ?2 AS INTEGER) AS bucket,
       SUM(a.status_code BETWEEN 200 AND 299) AS ok,
       SUM(a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299) AS failed
FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
WHERE d.hook_id IN (SELECT value FROM json_each(?3)) AND d.id >= ?4 AND a.at >= ?1
GROUP BY d.hook_id, bucket;

-- name: portal_hook_last_error
-- Each hook's latest failed attempt (SQLite takes the bare columns from the MAX row).
SELECT d.hook_id, MAX(a.at) AS at, a.status_code, a.error
FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
WHERE d.hook_id IN (SELECT value FROM json_each(?1)) AND d.id >= ?2
  AND (a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
GROUP BY d.hook_id;

-- name: portal_attempts_per_bucket
-- Attempts of every hook per time bucket among the latest ?3 attempts: (start, step, rows).
SELECT CAST((at - ?1) / ?2 AS INTEGER) AS bucket,
       SUM(status_code BETWEEN 200 AND 299) AS ok,
       SUM(status_code IS NULL OR status_code NOT BETWEEN 200 AND 299) AS failed
FROM attempts
WHERE rowid > (SELECT COALESCE(MAX(rowid), 0) FROM attempts) - ?3 AND at >= ?1
GROUP BY bucket;

-- name: portal_backlog_by_host
-- Pending deliveries per callback host, the largest first: (due before, limit).
SELECT host, COUNT(*) AS waiting, SUM(next_attempt_at <= ?1) AS due
FROM deliveries WHERE status = 'pending' AND held = 0 AND claimed = 0
GROUP BY host ORDER BY waiting DESC LIMIT ?2;

-- name: portal_troubled_hooks
-- Hooks disabled, removed or failing now, the longest failing first: (limit).
SELECT * FROM hooks
WHERE deleted_at IS NULL AND (status IN ('disabled', 'removed') OR consecutive_failures > 0)
ORDER BY status = 'active', COALESCE(failing_since, updated_at) LIMIT ?1;

-- name: portal_accounts
-- Every account with its hooks (not deleted) counted.
SELECT a.name,
       (SELECT COUNT(*) FROM hooks h WHERE h.account = a.name AND h.deleted_at IS NULL) AS hooks
FROM accounts a ORDER BY a.name LIMIT ?1;
