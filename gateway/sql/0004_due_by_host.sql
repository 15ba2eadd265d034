-- The due rows again, by callback host. A claim scans deliveries_due in time order and skips
-- the rows of hosts at their bound; a host that never answers keeps its whole backlog due at
-- the head of that index, so every claim for the other hosts walked past all of it (20,000
-- rows: 3 ms a claim, growing as the healthy host's rows were taken from between them). Past
-- a wall of such rows a claim goes host by host on this index instead (Storage._claim_tx).
CREATE INDEX deliveries_due_by_host ON deliveries(host, next_attempt_at)
    WHERE status = 'pending' AND held = 0 AND claimed = 0;
