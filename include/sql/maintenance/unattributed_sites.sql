-- Distinct site_ids of pending rows that have no client (partial index
-- events_log_unattributed_idx).
SELECT DISTINCT site_id
FROM events_log
WHERE client_id IS NULL
  AND site_id IS NOT NULL
  AND export_status = 'pending'
