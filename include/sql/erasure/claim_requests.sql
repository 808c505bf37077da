-- Take one client's due requests (the caller holds the client's erasure lock): mark
-- them processing, count the pass, and lease them for %(lease_minutes)s minutes (a
-- pass that dies is taken over after it). The visitor's digest is kept from now on
-- (the visitor id itself is cleared when the request is done).
UPDATE gdpr_erasure_requests
SET status = 'processing',
    attempts = attempts + 1,
    started_at = coalesce(started_at, now()),
    last_attempt_at = now(),
    next_attempt_at = now() + make_interval(mins => %(lease_minutes)s::int),
    visitor_digest = sha256(convert_to(client_id || chr(31) || visitor_id, 'UTF8'))
WHERE client_id = %(client_id)s
  AND status IN ('pending', 'processing')
  AND coalesce(next_attempt_at, '-infinity') <= now()
  AND visitor_id IS NOT NULL
RETURNING request_id, client_id, visitor_id, landing_done_at, whole_backup, whole_backup_done_at
