-- The lines of an original file that replays have loaded already (never loaded twice).
SELECT line
FROM replayed_lines
WHERE original_file_id = %(original_file_id)s
ORDER BY line
