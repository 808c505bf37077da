-- The ONE rewrite of an exported row: after every part is in both buckets, in
-- the same REPEATABLE READ transaction (same snapshot) as select_rows.sql, with
-- the same predicate: assign the hour and mark the rows exported. Rows
-- committed after the snapshot are not visible here and stay for a later hour;
-- a row changed or deleted by another transaction since the snapshot makes
-- this statement fail (serialization failure: nothing is marked, the retry
-- exports again). Rows of the hour already exported are not touched.
UPDATE events_log
SET export_hour = %(hour_start)s,
    export_status = 'exported',
    processed_at = now()
WHERE client_id = %(client_id)s
  AND export_status = 'pending'
  AND (export_hour = %(hour_start)s
       OR (%(claim)s <> 'none'
           AND export_hour IS NULL
           AND created_at < %(hour_end)s
           AND (%(claim)s = 'through' OR created_at >= %(hour_start)s)));
