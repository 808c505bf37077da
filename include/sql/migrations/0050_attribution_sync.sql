-- Attribution sync with the pixel management service (docs/attribution.md).
-- Idempotent: every statement can run again without effect.

-- Where a domain mapping comes from: 'manual' (operators, the only source until
-- now: existing rows keep it through the default) or 'pixel_management' (an
-- answer of the service). resolved_at: when the service last gave this answer
-- (NULL for manual rows, which the sync never asks about again).
ALTER TABLE client_domains ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'manual';
ALTER TABLE client_domains ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'client_domains_source_valid') THEN
        ALTER TABLE client_domains
            ADD CONSTRAINT client_domains_source_valid CHECK (source IN ('manual', 'pixel_management'));
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS client_domains_service_idx
    ON client_domains (resolved_at)
    WHERE source = 'pixel_management';

-- Negative cache: sites the service answered 404 for (or whose answer could not
-- be applied), so the same site is asked again only after
-- events_attribution_negative_ttl_minutes. The TTL is applied when reading
-- (checked_at), so a changed Variable takes effect at once.
CREATE TABLE IF NOT EXISTS attribution_negative_cache (
    site            text PRIMARY KEY,
    reason          text NOT NULL
                    CONSTRAINT attribution_negative_cache_reason_valid
                    CHECK (reason IN ('not_found', 'unknown_client', 'move', 'malformed', 'withdrawn')),
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    checked_at      timestamptz NOT NULL DEFAULT now(),
    checks          integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS attribution_negative_cache_checked_idx
    ON attribution_negative_cache (checked_at);

-- Answers that were not applied as they came (an unknown client, a malformed
-- body, a domain the service moved to another client, a mapped domain the
-- service no longer knows). Each stays open - and check_attribution_sync
-- fails naming it - until an operator sets acknowledged_at.
CREATE TABLE IF NOT EXISTS attribution_sync_problems (
    problem_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL
                        CONSTRAINT attribution_sync_problems_kind_valid
                        CHECK (kind IN ('unknown_client', 'move', 'malformed', 'withdrawn')),
    domain              text NOT NULL,
    current_client_id   text,                 -- mapped in client_domains when the answer came
    answered_client_id  text,                 -- what the service answered (NULL: none readable)
    applied             boolean NOT NULL DEFAULT false,
    applied_at          timestamptz,
    rows_released       bigint NOT NULL DEFAULT 0,  -- a move: unexported rows handed to the new client
    detail              text,
    detected_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    occurrences         integer NOT NULL DEFAULT 1,
    airflow_run_id      text,
    acknowledged_at     timestamptz,
    acknowledged_by     text
);
-- One open row per problem: a repeated answer counts occurrences instead of adding rows.
CREATE UNIQUE INDEX IF NOT EXISTS attribution_sync_problems_open_uq
    ON attribution_sync_problems (kind, domain, coalesce(current_client_id, ''), coalesce(answered_client_id, ''))
    WHERE acknowledged_at IS NULL;

-- One row per sync run: what it asked and got; check_attribution_sync reads it.
CREATE TABLE IF NOT EXISTS attribution_sync_runs (
    sync_run_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    airflow_run_id  text,
    status          text NOT NULL DEFAULT 'running'
                    CONSTRAINT attribution_sync_runs_status_valid
                    CHECK (status IN ('running', 'ok', 'errors', 'aborted')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    sites_asked     integer NOT NULL DEFAULT 0,
    mapped          integer NOT NULL DEFAULT 0,
    confirmed       integer NOT NULL DEFAULT 0,
    moved           integer NOT NULL DEFAULT 0,
    not_found       integer NOT NULL DEFAULT 0,
    problems        integer NOT NULL DEFAULT 0,
    errors          integer NOT NULL DEFAULT 0,
    deferred        integer NOT NULL DEFAULT 0,
    rows_released   bigint NOT NULL DEFAULT 0,
    sites_waiting   integer,
    error_sample    text,
    error           text,
    reattributed_at timestamptz
);
CREATE INDEX IF NOT EXISTS attribution_sync_runs_started_idx ON attribution_sync_runs (started_at);
