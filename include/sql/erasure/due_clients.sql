-- Clients with erasure requests due now: pending (or processing after a pass that
-- died: its lease ran out) with their next attempt time reached.
SELECT DISTINCT client_id
FROM gdpr_erasure_requests
WHERE status IN ('pending', 'processing')
  AND coalesce(next_attempt_at, '-infinity') <= now()
ORDER BY client_id
