-- Where the next incremental GDPR sweep may start reading: the earliest created_at a row
-- not yet visible to this sweep can have. created_at is the inserting transaction's
-- start (column default now()), so a row committed after this point still has
-- created_at >= the start of the oldest transaction open now; without any, now().
-- Only client backends write rows (autovacuum and the like do not insert).
-- hidden_sessions: other backends of this database whose activity this role may not
-- see (a role without pg_read_all_stats sees another role's sessions with state,
-- xact_start and backend_type NULL). Such a session may be a load in an open
-- transaction, so the watermark above is not a safe bound: the caller keeps the
-- previous one (privacy.sweep.take_watermark). An idle visible session has a NULL
-- xact_start too, but a non-NULL state: it is not counted.
SELECT least(now(), min(a.xact_start) FILTER (WHERE a.backend_type = 'client backend')) AS swept_from,
       count(*) FILTER (WHERE a.backend_type IS NULL
                          AND a.state IS NULL
                          AND a.xact_start IS NULL
                          AND a.datid = (SELECT d.oid FROM pg_database AS d
                                        WHERE d.datname = current_database()))
           AS hidden_sessions,
       current_user::text AS role
FROM pg_stat_activity AS a
WHERE a.pid <> pg_backend_pid()
