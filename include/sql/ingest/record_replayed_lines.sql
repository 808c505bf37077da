-- In a replay's load transaction: record each original line it loads. A line
-- another replay loaded (or is loading: the insert waits for its transaction)
-- is not returned, and the load is redone without it.
INSERT INTO replayed_lines (original_file_id, line, replay_file_id)
SELECT %(original_file_id)s, l.line, %(replay_file_id)s
FROM unnest(%(lines)s::bigint[]) AS l (line)
ON CONFLICT (original_file_id, line) DO NOTHING
RETURNING line
