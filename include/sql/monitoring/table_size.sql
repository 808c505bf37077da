-- The original design's "Table size and growth". The original design's pg_total_relation_size('events_log')
-- is 0 for a partitioned table and its count(*) scans every row: sum the
-- partitions instead and estimate total rows from the planner statistics
-- (reltuples is -1 for a never-analyzed partition: counted as 0).
-- Parameters: interval_end.
SELECT pg_size_pretty(sum(pg_total_relation_size(t.relid))) AS table_size,
       sum(pg_total_relation_size(t.relid)) AS table_bytes,
       count(*) FILTER (WHERE t.isleaf) AS partitions,
       sum(greatest(c.reltuples, 0))::bigint AS total_rows_estimate,
       (SELECT count(*)
        FROM events_log
        WHERE created_at >= %(interval_end)s::timestamptz - interval '24 hours'
          AND created_at < %(interval_end)s::timestamptz) AS last_24h
FROM pg_partition_tree('events_log') t
JOIN pg_class c ON c.oid = t.relid
