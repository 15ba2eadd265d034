-- The callback host on each delivery, in the due index: a claim skips the rows of hosts at
-- their bound from the index alone. Before, it joined every such row to its hook to find
-- the host, and a host that never answers keeps its rows at the head of the index: claims
-- for the other hosts took 14 ms each behind 10,000 of them.
ALTER TABLE deliveries ADD COLUMN host TEXT NOT NULL DEFAULT '';

UPDATE deliveries SET host = COALESCE((SELECT h.host FROM hooks h WHERE h.id = deliveries.hook_id), '')
WHERE status = 'pending';

DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries(next_attempt_at, host)
    WHERE status = 'pending' AND held = 0 AND claimed = 0;

-- A hook moved to another host takes its pending deliveries along.
CREATE TRIGGER deliveries_follow_hook_host AFTER UPDATE OF host ON hooks
WHEN NEW.host IS NOT OLD.host
BEGIN
    UPDATE deliveries SET host = NEW.host WHERE hook_id = NEW.id AND status = 'pending';
END;
