-- Maintenance, billing and erasure bookkeeping.
-- Idempotent: every statement can run again without effect.

-- One row per maintenance step, client and partition touched: what a run did.
-- Archival counts per client, retention per partition and mode, GDPR sweep and
-- re-attribution counts: the audit trail on-call reads after a run.
CREATE TABLE IF NOT EXISTS maintenance_log (
    log_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    step            text NOT NULL
                    CONSTRAINT maintenance_log_step_valid
                    CHECK (step IN ('retention', 'archival', 'gdpr_sweep', 'reattribution', 'partitions')),
    client_id       text,
    partition_name  text,
    rows_affected   bigint NOT NULL DEFAULT 0,
    details         jsonb,
    airflow_run_id  text,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS maintenance_log_step_idx ON maintenance_log (step, finished_at);

-- Days whose billing rollup has been computed. Retention only deletes rows of a
-- day listed here (docs/maintenance.md, "Ordering").
CREATE TABLE IF NOT EXISTS billing_runs (
    day             date PRIMARY KEY,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    clients         integer NOT NULL DEFAULT 0,
    airflow_run_id  text
);

-- Per daily partition: when archival last covered it completely, so a day is
-- scanned for stale pending rows once, not every day for ever.
CREATE TABLE IF NOT EXISTS partition_maintenance (
    day                 date PRIMARY KEY,
    archival_done_at    timestamptz
);
