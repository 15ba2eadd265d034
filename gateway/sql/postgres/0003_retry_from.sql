-- The attempts a delivery had made before its current set of retries (as SQLite's sql/0006): a
-- recovered delivery starts the retry schedule over (attempts - retry_from), while `attempts`
-- keeps counting every try, as the attempt log does.
ALTER TABLE deliveries ADD COLUMN retry_from INTEGER NOT NULL DEFAULT 0;
