-- Seed "Index efficiency". pg_stat_user_indexes has relname/indexrelname
-- (not tablename/indexname as the original design wrote) and one row per partition's
-- index: sum them per index of the partitioned parent.
SELECT coalesce(parent.relname, s.indexrelname) AS index_name,
       sum(s.idx_scan)::bigint AS idx_scan,
       sum(s.idx_tup_read)::bigint AS idx_tup_read,
       sum(s.idx_tup_fetch)::bigint AS idx_tup_fetch,
       pg_size_pretty(sum(pg_relation_size(s.indexrelid))) AS size
FROM pg_stat_user_indexes s
LEFT JOIN pg_inherits i ON i.inhrelid = s.indexrelid
LEFT JOIN pg_class parent ON parent.oid = i.inhparent
WHERE s.relid IN (SELECT relid FROM pg_partition_tree('events_log'))
GROUP BY 1
ORDER BY 1
