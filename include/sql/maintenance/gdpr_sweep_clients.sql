-- GDPR clients and what their last completed sweep covered (gdpr_sweep_state, migration
-- 0120; no row for a client created before that migration: it gets a full pass).
SELECT c.client_id,
       coalesce(s.level_changes, 0) AS level_changes,
       s.covered_changes,
       s.rule_version,
       s.swept_from
FROM clients AS c
LEFT JOIN gdpr_sweep_state AS s ON s.client_id = c.client_id
WHERE c.privacy_level = 'gdpr'
ORDER BY c.client_id
