-- Landing files that loaded rows for the client (or unattributed rows) and moved to
-- processed/ between %(since)s and %(until)s: used when the client's retention_days is
-- shorter than processed/ objects are kept, so rows of a file may already be deleted
-- while its object still holds the visitor's lines.
SELECT DISTINCT lf.file_id, lf.status, lf.processed_key
FROM landing_files AS lf
JOIN ingest_counts AS c ON c.file_id = lf.file_id
WHERE lf.bucket = %(bucket)s
  AND lf.status = 'processed'
  AND c.client_id IN (%(client_id)s, '')
  AND lf.moved_at >= %(since)s
  AND lf.moved_at < %(until)s
