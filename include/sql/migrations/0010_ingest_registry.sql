-- Ingest: how many lines of a file had NUL characters replaced
-- (docs/decisions/ingest-nul-policy.md), and a lookup of expired claims.
ALTER TABLE landing_files ADD COLUMN IF NOT EXISTS lines_nul_replaced bigint;
ALTER TABLE landing_files ADD COLUMN IF NOT EXISTS lines_blank bigint;

CREATE INDEX IF NOT EXISTS landing_files_unmoved_idx
    ON landing_files (bucket, lease_expires_at)
    WHERE moved_at IS NULL;
