-- Export safety (contract §5; docs/export.md; docs/decisions/export-no-shrink-and-spaces.md).
-- Idempotent: every statement can run again without effect.

-- What an hour's marking committed: the rows marked into the hour and the parts that
-- held them, written in the SAME transaction as the marking (status stays 'running'
-- until the manifest is written). A later run of the hour that would write fewer rows
-- (rows deleted since by retention or erasure) or fewer parts refuses to shrink the
-- hour unless an operator allows it (docs/runbook.md#events_export).
ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS committed_rows bigint;
ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS committed_files jsonb;
ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS committed_at timestamptz;
-- The operator's choice that let a run shrink an hour (who / why, from the trigger form).
ALTER TABLE export_runs ADD COLUMN IF NOT EXISTS shrink_allowed text;

-- Hours not published yet (failed, running): few rows, read every hour by the health
-- check that looks for hours whose rows are marked but whose manifest is missing.
CREATE INDEX IF NOT EXISTS export_runs_unpublished_idx
    ON export_runs (client_id, interval_start)
    WHERE status <> 'succeeded';

-- Every bucket + prefix a client's exports were ever written to (objects stay there:
-- nothing deletes them). Tenant isolation refuses a client whose space would hold
-- another client's earlier objects, even after that client moved or was deleted.
CREATE TABLE IF NOT EXISTS export_spaces (
    client_id       text NOT NULL,
    bucket          text NOT NULL,
    prefix          text NOT NULL,
    first_used_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, bucket, prefix)
);
CREATE INDEX IF NOT EXISTS export_spaces_bucket_idx ON export_spaces (bucket);

-- The spaces of the exports run so far, from the manifests they recorded
-- (s3://<bucket>/<prefix>/dt=YYYY-MM-DD/hour=HH/_manifest.json).
INSERT INTO export_spaces (client_id, bucket, prefix, first_used_at, last_used_at)
SELECT r.client_id, s.bucket, s.prefix,
       min(coalesce(r.started_at, r.interval_end)), max(coalesce(r.finished_at, r.interval_end))
FROM export_runs AS r
CROSS JOIN LATERAL (
    SELECT split_part(substr(r.manifest_key, 6), '/', 1) AS bucket,
           regexp_replace(substr(r.manifest_key, 6), '^[^/]+/(.*)/dt=[0-9-]+/hour=[0-9]+/_manifest\.json$',
                          '\1') AS prefix
) AS s
WHERE r.manifest_key ~ '^s3://[^/]+/.+/dt=[0-9-]+/hour=[0-9]+/_manifest\.json$'
GROUP BY r.client_id, s.bucket, s.prefix
ON CONFLICT (client_id, bucket, prefix) DO NOTHING;
