-- Record what a completed GDPR sweep covered, per client: the level changes it saw
-- when it started (a change during the sweep leaves covered_changes < level_changes:
-- the next sweep makes a full pass), the treatment rule, and the watermark from which
-- the next sweep reads (gdpr_sweep_watermark.sql). level_changes itself belongs to the
-- trigger on clients and is never written here. A NULL %(swept_from)s (some sessions
-- were not visible to the sweep's role, privacy.sweep.take_watermark) keeps each
-- client's previous watermark (none: the next sweep makes a full pass again).
INSERT INTO gdpr_sweep_state AS s (client_id, covered_changes, rule_version, swept_from, swept_at, full_pass_at)
SELECT k.client_id, k.changes, %(rule_version)s, %(swept_from)s::timestamptz, now(), CASE WHEN k.is_full THEN now() END
FROM unnest(%(client_ids)s::text[], %(changes)s::bigint[], %(is_full)s::boolean[]) AS k (client_id, changes, is_full)
WHERE EXISTS (SELECT 1 FROM clients AS c WHERE c.client_id = k.client_id)
ON CONFLICT (client_id) DO UPDATE
SET covered_changes = excluded.covered_changes,
    rule_version = excluded.rule_version,
    swept_from = coalesce(excluded.swept_from, s.swept_from),
    swept_at = excluded.swept_at,
    full_pass_at = coalesce(excluded.full_pass_at, s.full_pass_at)
