-- Health check "check_rejected_rate" (docs/runbook.md#check_rejected_rate).
-- Share of rejected lines among the lines of the landing files loaded in the
-- run's data interval (landing_files.loaded_at in [interval_start, interval_end),
-- index landing_files_loaded_at_idx; ingest sets loaded_at with the load):
-- rows_rejected / (rows_loaded + rows_rejected). ok is false when at least
-- min_lines lines were read and the rate is above max_rate.
-- Parameters: interval_start, interval_end, max_rate (0..1), min_lines.
WITH files AS (
    SELECT file_id, bucket, key, rejected_key,
           coalesce(rows_loaded, 0) AS loaded,
           coalesce(rows_rejected, 0) AS rejected,
           loaded_at
    FROM landing_files
    WHERE status IN ('loaded', 'processed')
      AND loaded_at >= %(interval_start)s::timestamptz
      AND loaded_at < %(interval_end)s::timestamptz
),
totals AS (
    SELECT count(*) AS file_count,
           coalesce(sum(loaded), 0) AS loaded_lines,
           coalesce(sum(rejected), 0) AS rejected_lines
    FROM files
)
SELECT
    t.file_count,
    t.loaded_lines,
    t.rejected_lines,
    CASE WHEN t.loaded_lines + t.rejected_lines > 0
         THEN round(t.rejected_lines::numeric / (t.loaded_lines + t.rejected_lines), 4) END AS rejected_rate,
    (t.loaded_lines + t.rejected_lines < %(min_lines)s::bigint
        OR t.rejected_lines <= %(max_rate)s::numeric * (t.loaded_lines + t.rejected_lines)) AS ok,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'file_id', f.file_id, 'key', f.key, 'rejected_key', f.rejected_key,
                'rejected', f.rejected, 'loaded', f.loaded, 'loaded_at', f.loaded_at)
                ORDER BY f.rejected DESC, f.file_id), '[]'::jsonb)
     FROM (SELECT * FROM files WHERE rejected > 0 ORDER BY rejected DESC, file_id LIMIT 5) f) AS worst_files
FROM totals t
