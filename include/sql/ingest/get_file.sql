-- One registry row, for reports (quarantine error.json, recovery logs).
SELECT file_id, bucket, key, etag, size_bytes, status, error, rows_loaded, rows_rejected, attempts,
       claimed_by, batch_id, erased_lines, erased_line_numbers
FROM landing_files
WHERE file_id = %(file_id)s
