-- events_client_check: what the client's next export will take (its unclaimed pending
-- rows: the newest hour's run takes every one created before the hour's end) and what
-- was published for it so far.
SELECT
    (SELECT count(*) FROM events_log
      WHERE client_id = %(client_id)s AND export_hour IS NULL AND export_status = 'pending') AS pending_rows,
    (SELECT min(created_at) FROM events_log
      WHERE client_id = %(client_id)s AND export_hour IS NULL AND export_status = 'pending') AS oldest_pending,
    (SELECT count(*) FROM export_runs
      WHERE client_id = %(client_id)s AND status = 'succeeded') AS published_hours,
    (SELECT max(interval_start) FROM export_runs
      WHERE client_id = %(client_id)s AND status = 'succeeded') AS last_published;
