-- The original file a replay carries lines of (events_replay), or no row for an
-- ordinary landing file: its id and identity (the ids of events without one derive from it).
SELECT o.file_id, o.bucket, o.key, o.etag
FROM landing_files AS f
JOIN landing_files AS o ON o.file_id = f.replay_of
WHERE f.file_id = %(file_id)s
