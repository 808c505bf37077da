-- %(domain)s now has an answer that was applied (or confirmed): its open
-- problems that this answer settles (unknown client, malformed body, no longer
-- known) are closed. Moves stay open until an operator acknowledges them.
UPDATE attribution_sync_problems
SET acknowledged_at = now(),
    acknowledged_by = 'attribution sync: settled by a later answer'
WHERE domain = %(domain)s
  AND acknowledged_at IS NULL
  AND kind IN ('unknown_client', 'malformed', 'withdrawn')
RETURNING problem_id, kind
