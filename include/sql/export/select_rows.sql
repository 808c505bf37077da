-- Exported columns of (client, hour), as text for COPY ... (FORMAT csv), read in
-- the export's REPEATABLE READ snapshot:
--   * the rows already in the hour (export_hour = H: a published hour, or an
--     earlier attempt that committed its marking but not its manifest), plus
--   * unless %(claim)s = 'none' (hour already published), the rows this run
--     takes: unclaimed pending rows of the client created before the hour's end
--     ('through': the newest hour so far, late rows of earlier hours included)
--     or inside the hour only ('within': a backfill of an old hour).
-- mark_rows.sql updates exactly these rows with the same predicate in the same
-- snapshot. Timestamps are rendered as UTC wall-clock (the session's DateStyle
-- is ISO), ip_address in inet's output form ('1.2.3.4', '1.2.3.0/24'),
-- raw_event_data as its JSON text.
SELECT
    event_id::text,
    event_type,
    session_id,
    visitor_id,
    site_id,
    ("timestamp" AT TIME ZONE 'UTC'),
    url,
    path,
    user_agent,
    ip_address,
    raw_event_data::text,
    (created_at AT TIME ZONE 'UTC'),
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
