-- Ingest honours erasure tombstones (contract §2.4, §2.7, §6.5; docs/ingest.md "Erased
-- visitors"): lines of a visitor a client had erased, whose timestamp is not after the
-- tombstone's erased_through, are dropped at ingest, counted per file and audited.
-- Idempotent: every statement can run again without effect. Adding a column with a
-- constant default does not rewrite the table.

-- erased_lines: lines of the file dropped for erased visitors (lines = rows_loaded +
-- rows_rejected + erased_lines + blank lines + lines a replay had loaded already).
-- erased_line_numbers: their line (Parquet: row) numbers, so that a move finished by a
-- later run still writes the processed/ copy without them (no visitor data: numbers only).
ALTER TABLE landing_files ADD COLUMN IF NOT EXISTS erased_lines bigint NOT NULL DEFAULT 0;
ALTER TABLE landing_files ADD COLUMN IF NOT EXISTS erased_line_numbers bigint[];

-- The audit trail gets one row per (request, landing file) whose lines ingest dropped.
-- The action list is widened from its current definition (other actions kept as they are).
DO $$
DECLARE
    current_def text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO current_def
    FROM pg_constraint
    WHERE conname = 'gdpr_erasure_audit_action_valid';
    IF current_def IS NOT NULL AND current_def NOT LIKE '%lines_dropped_at_ingest%' THEN
        ALTER TABLE gdpr_erasure_audit DROP CONSTRAINT gdpr_erasure_audit_action_valid;
        EXECUTE 'ALTER TABLE gdpr_erasure_audit ADD CONSTRAINT gdpr_erasure_audit_action_valid '
             || 'CHECK (action = ''lines_dropped_at_ingest'' OR '
             || substring(current_def FROM '^CHECK (.*)$') || ')';
    END IF;
END
$$;
