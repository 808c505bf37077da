-- Same transaction as the COPY: the file is loaded exactly when its events are.
UPDATE landing_files
SET status = 'loaded',
    batch_id = %(batch_id)s,
    rows_loaded = %(rows_loaded)s,
    rows_rejected = %(rows_rejected)s,
    rejected_key = %(rejected_key)s,
    lines_nul_replaced = %(lines_nul_replaced)s,
    lines_blank = %(lines_blank)s,
    erased_lines = %(erased_lines)s,
    erased_line_numbers = %(erased_line_numbers)s,
    loaded_at = clock_timestamp(),
    duration_ms = %(duration_ms)s,
    lease_expires_at = now() + make_interval(mins => %(lease_minutes)s),
    error = NULL
WHERE file_id = %(file_id)s AND claimed_by = %(token)s AND status = 'claimed'
