-- Where the next incremental GDPR sweep may start reading: the earliest created_at a row
-- not yet visible to this sweep can have. created_at is the inserting transaction's
-- start (column default now()), so a row committed after this point still has
-- created_at >= the start of the oldest transaction open now; without any, now().
-- Only client backends write rows (autovacuum and the like do not insert).
SELECT least(now(), min(a.xact_start)) AS swept_from
FROM pg_stat_activity AS a
WHERE a.backend_type = 'client backend'
  AND a.pid <> pg_backend_pid()
  AND a.xact_start IS NOT NULL
