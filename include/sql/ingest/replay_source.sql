-- The file a replay is asked for (events_replay), with the original whose lines it
-- carries: itself, or for a replay file the file it replayed (root_id, root_key).
SELECT f.file_id, f.key, f.status, f.moved_at, f.processed_key, f.rows_rejected, f.rejected_key,
       coalesce(f.replay_of, f.file_id) AS root_id,
       coalesce(o.key, f.key) AS root_key
FROM landing_files AS f
LEFT JOIN landing_files AS o ON o.file_id = f.replay_of
WHERE f.file_id = %(file_id)s
