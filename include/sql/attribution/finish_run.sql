-- A sync run ends: its counts, the sites still waiting and the first error.
UPDATE attribution_sync_runs
SET status = %(status)s,
    finished_at = now(),
    sites_asked = %(sites_asked)s,
    mapped = %(mapped)s,
    confirmed = %(confirmed)s,
    moved = %(moved)s,
    not_found = %(not_found)s,
    problems = %(problems)s,
    errors = %(errors)s,
    deferred = %(deferred)s,
    rows_released = %(rows_released)s,
    sites_waiting = %(sites_waiting)s,
    error_sample = %(error_sample)s,
    error = %(error)s
WHERE sync_run_id = %(sync_run_id)s
