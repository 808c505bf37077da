-- Which of these export hours of the client are being exported right now.
SELECT interval_start
FROM export_runs
WHERE client_id = %(client_id)s
  AND interval_start = ANY(%(hours)s::timestamptz[])
  AND status = 'running'
