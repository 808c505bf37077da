-- Landing files whose rows a delete that ran at %(deleted_at)s may not have seen: their
-- load started before it and is still running (a live claim) or committed around or
-- after it (loaded_at is taken just before the load's commit).
SELECT file_id, status, load_started_at
FROM landing_files
WHERE load_started_at < %(deleted_at)s
  AND ((status = 'claimed' AND lease_expires_at > now())
       OR loaded_at >= %(deleted_at)s::timestamptz - interval '10 seconds')
