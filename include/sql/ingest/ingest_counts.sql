-- Per (file, client) rows loaded, in the load transaction (billing reads it).
-- client_id '' = unattributed at load time; day = UTC day of created_at (now()).
INSERT INTO ingest_counts (file_id, client_id, day, rows_loaded)
SELECT %(file_id)s, c.client_id, (now() AT TIME ZONE 'UTC')::date, c.rows_loaded
FROM unnest(%(client_ids)s::text[], %(counts)s::bigint[]) AS c(client_id, rows_loaded)
