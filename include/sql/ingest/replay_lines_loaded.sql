-- How many original lines a replay file loaded (its replayed_lines rows).
SELECT count(*) FROM replayed_lines WHERE replay_file_id = %(replay_file_id)s
