-- Health: check_rejected_rate reads the landing files loaded in one
-- hour every hour; landing_files is never pruned (one row per file, ~200k a
-- month at the target scale), so find the hour's files by index, not by scan.
CREATE INDEX IF NOT EXISTS landing_files_loaded_at_idx
    ON landing_files (loaded_at)
    WHERE loaded_at IS NOT NULL;
