-- After both buckets hold the files and the manifest: mark the hour's rows.
UPDATE events_log
SET export_status = 'exported',
    processed_at = now()
WHERE client_id = %(client_id)s
  AND export_hour = %(hour_start)s
  AND export_status = 'pending';
