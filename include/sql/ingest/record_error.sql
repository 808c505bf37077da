-- A load attempt failed for a reason a retry may fix; kept for on-call.
UPDATE landing_files SET error = %(error)s WHERE file_id = %(file_id)s AND claimed_by = %(token)s
