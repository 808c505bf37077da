-- Exported columns of (client, hour), read through ADBC (binary COPY into Arrow)
-- by a second connection that imports the export's REPEATABLE READ snapshot:
--   * the rows already in the hour (export_hour = H: a published hour, or an
--     earlier attempt that committed its marking but not its manifest), plus
--   * unless %(claim)s = 'none' (hour already published), the rows this run
--     takes: unclaimed pending rows of the client created before the hour's end
--     ('through': the newest hour so far, late rows of earlier hours included)
--     or inside the hour only ('within': a backfill of an old hour).
-- mark_rows.sql updates exactly these rows with the same predicate in the same
-- snapshot. Timestamps as UTC wall-clock timestamps (labelled UTC in the files),
-- ip_address in inet's output form ('1.2.3.4', '1.2.3.0/24': abbrev(inet) is
-- exactly that text), event_id and raw_event_data as text. The aliases are the
-- Parquet column names.
SELECT
    event_id::text AS event_id,
    event_type,
    session_id,
    visitor_id,
    site_id,
    ("timestamp" AT TIME ZONE 'UTC') AS "timestamp",
    url,
    path,
    user_agent,
    abbrev(ip_address) AS ip_address,
    raw_event_data::text AS raw_event_data,
    (created_at AT TIME ZONE 'UTC') AS created_at,
    batch_id,
    client_id
FROM events_log
WHERE client_id = %(client_id)s
  AND (export_hour = %(hour_start)s
       OR (%(claim)s <> 'none'
           AND export_hour IS NULL
           AND export_status = 'pending'
           AND created_at < %(hour_end)s
           AND (%(claim)s = 'through' OR created_at >= %(hour_start)s)))
ORDER BY created_at, id
