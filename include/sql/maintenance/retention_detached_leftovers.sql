-- Partitions retention detached and renamed <partition>_expired but did not drop
-- (the run stopped between the two transactions). They are no longer part of
-- events_log; their rows are already gone from it.
SELECT c.relname
FROM pg_class AS c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relkind = 'r'
  AND NOT c.relispartition
  AND c.relname LIKE 'events\_log\_p%\_expired'
ORDER BY c.relname
