-- An answer that was not applied as it came (or a move that was): one open row
-- per (kind, domain, current client, answered client); a repeat counts up.
INSERT INTO attribution_sync_problems AS p
    (kind, domain, current_client_id, answered_client_id, applied, applied_at, detail, airflow_run_id)
VALUES (%(kind)s, %(domain)s, %(current_client_id)s, %(answered_client_id)s, %(applied)s,
        CASE WHEN %(applied)s THEN now() END, %(detail)s, %(run_id)s)
ON CONFLICT (kind, domain, coalesce(current_client_id, ''), coalesce(answered_client_id, ''))
    WHERE acknowledged_at IS NULL
DO UPDATE
SET last_seen_at = now(),
    occurrences = p.occurrences + 1,
    detail = EXCLUDED.detail,
    airflow_run_id = EXCLUDED.airflow_run_id,
    applied = p.applied OR EXCLUDED.applied,
    applied_at = coalesce(EXCLUDED.applied_at, p.applied_at)
RETURNING problem_id, occurrences
