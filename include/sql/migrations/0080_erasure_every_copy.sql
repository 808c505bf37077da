-- Erasure reaches every copy and never silently gives up; landing objects expire
-- (contract §4.3, §6.5; docs/maintenance.md "Erasure", "Landing objects").
-- Idempotent: every statement can run again without effect.

-- Requests: who asked and under which reference (trigger form of events_gdpr_erasure),
-- the Airflow run that filed it (a retried filing task files once), the retry schedule
-- (failures: passes that failed; next_attempt_at grows with them), when the landing
-- bucket was done.
-- visitor_digest = sha256(client_id || chr(31) || visitor_id): once a request is done its
-- visitor_id is cleared (the request must not keep what it erased); the digest stays.
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS requested_by text;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS reference text;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS filed_by_run_id text;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS landing_done_at timestamptz;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS visitor_digest bytea;
-- whole_backup: also read every backup folder of the client, not only the hours of the
-- visitor's rows still in events_log (for events older than the client's retention).
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS whole_backup boolean NOT NULL DEFAULT false;
ALTER TABLE gdpr_erasure_requests ADD COLUMN IF NOT EXISTS whole_backup_done_at timestamptz;
ALTER TABLE gdpr_erasure_requests ALTER COLUMN visitor_id DROP NOT NULL;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'gdpr_erasure_requests_visitor_known') THEN
        ALTER TABLE gdpr_erasure_requests
            ADD CONSTRAINT gdpr_erasure_requests_visitor_known
            CHECK (visitor_id IS NOT NULL OR (status = 'done' AND visitor_digest IS NOT NULL));
    END IF;
END
$$;
CREATE UNIQUE INDEX IF NOT EXISTS gdpr_erasure_requests_filed_by_run_idx
    ON gdpr_erasure_requests (filed_by_run_id)
    WHERE filed_by_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS gdpr_erasure_requests_open_idx
    ON gdpr_erasure_requests (client_id, next_attempt_at)
    WHERE status IN ('pending', 'processing', 'failed');

-- The export hours that held a request's visitor, recorded in the transaction that
-- deletes the visitor's rows (their export_hour): the backup folders to purge, and
-- only those. purged_at: the folder was purged (reset when an export raced the purge).
CREATE TABLE IF NOT EXISTS gdpr_erasure_hours (
    request_id      bigint NOT NULL REFERENCES gdpr_erasure_requests (request_id) ON DELETE CASCADE,
    export_hour     timestamptz NOT NULL,
    rows_deleted    bigint NOT NULL DEFAULT 0,
    purged_at       timestamptz,
    PRIMARY KEY (request_id, export_hour)
);

-- The landing files (landing_files.file_id) the visitor's deleted rows came from: their
-- processed/ objects hold the visitor's original lines. Recorded with the deletion.
CREATE TABLE IF NOT EXISTS gdpr_erasure_files (
    request_id      bigint NOT NULL REFERENCES gdpr_erasure_requests (request_id) ON DELETE CASCADE,
    file_id         bigint NOT NULL,
    rows_deleted    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (request_id, file_id)
);

-- The audit trail: one row per copy a request touched. bucket NULL: the events
-- database (key = the table). action: rows_deleted (database rows), rewritten (an object
-- written again without the visitor's lines), removed (an object deleted: nothing else
-- was left in it, or it could not be read line by line), listed_for_client (an object in
-- the client's own bucket holding the visitor: the client's to act on, never changed).
CREATE TABLE IF NOT EXISTS gdpr_erasure_audit (
    audit_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      bigint NOT NULL REFERENCES gdpr_erasure_requests (request_id) ON DELETE CASCADE,
    bucket          text,
    key             text NOT NULL,
    action          text NOT NULL
                    CONSTRAINT gdpr_erasure_audit_action_valid
                    CHECK (action IN ('rows_deleted', 'rewritten', 'removed', 'listed_for_client')),
    lines_removed   bigint,
    detail          text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gdpr_erasure_audit_request_idx ON gdpr_erasure_audit (request_id, audit_id);

-- Tombstones: (client, visitor digest) erased through a time. Re-attribution deletes,
-- instead of attributing to that client, the visitor's unattributed rows on the
-- client's domains that existed or happened by then (created_at or "timestamp"
-- <= erased_through); ingest is to do the same for lines it loads later.
CREATE TABLE IF NOT EXISTS gdpr_erasure_tombstones (
    client_id       text NOT NULL,
    visitor_digest  bytea NOT NULL,
    erased_through  timestamptz NOT NULL,
    request_id      bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, visitor_digest)
);

-- The audit trail of each request, readable (docs/runbook.md#events_gdpr_erasure).
CREATE OR REPLACE VIEW gdpr_erasure_audit_trail AS
SELECT r.request_id, r.client_id, r.requested_by, r.reference, r.status,
       a.at, a.action, a.bucket, a.key, a.lines_removed, a.detail
FROM gdpr_erasure_requests AS r
JOIN gdpr_erasure_audit AS a ON a.request_id = r.request_id;

-- Landing-object expiry writes one maintenance_log row per prefix (step 'landing_expiry').
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'maintenance_log_step_valid'
          AND pg_get_constraintdef(oid) LIKE '%landing_expiry%'
    ) THEN
        ALTER TABLE maintenance_log DROP CONSTRAINT IF EXISTS maintenance_log_step_valid;
        ALTER TABLE maintenance_log
            ADD CONSTRAINT maintenance_log_step_valid
            CHECK (step IN ('retention', 'archival', 'gdpr_sweep', 'reattribution', 'partitions',
                            'landing_expiry'));
    END IF;
END
$$;
