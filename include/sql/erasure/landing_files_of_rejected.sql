-- The landing files of rejected/ objects that held a requested visitor: their
-- processed/ objects hold the same lines (the whole file moves to processed/).
SELECT file_id, status, processed_key
FROM landing_files
WHERE bucket = %(bucket)s
  AND rejected_key = ANY(%(keys)s::text[])
