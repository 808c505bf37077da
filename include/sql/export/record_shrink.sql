-- An operator allowed this run to publish the hour with fewer rows than it held
-- (rows removed since by retention or erasure): keep who/why with the run.
-- Parameters: client_id, hour_start, shrink_allowed.
UPDATE export_runs
SET shrink_allowed = %(shrink_allowed)s
WHERE client_id = %(client_id)s
  AND interval_start = %(hour_start)s;
