-- events_client_check: the client's domains and the events seen for each since %(since)s,
-- attributed to the client or still unattributed (they get the client at the next
-- re-attribution). A domain matches its own site_id and every sub-domain's (label
-- boundary, as attribution does). The recent rows are grouped by site_id first, so the
-- domains are matched against a few distinct sites, not every row (partition pruning
-- on created_at keeps the scan to the last day's partitions).
WITH recent AS (
    SELECT site_id,
           client_id IS NULL AS unattributed,
           count(*) AS events,
           max(created_at) AS last_seen
    FROM events_log
    WHERE created_at >= %(since)s
      AND (client_id = %(client_id)s OR client_id IS NULL)
      AND site_id IS NOT NULL
    GROUP BY 1, 2
)
SELECT d.domain,
       coalesce(sum(r.events) FILTER (WHERE NOT r.unattributed), 0)::bigint AS attributed,
       coalesce(sum(r.events) FILTER (WHERE r.unattributed), 0)::bigint AS unattributed,
       max(r.last_seen) AS last_seen
FROM client_domains d
LEFT JOIN recent r
       ON r.site_id = d.domain
       OR right(r.site_id, length(d.domain) + 1) = '.' || d.domain
WHERE d.client_id = %(client_id)s
GROUP BY d.domain
ORDER BY d.domain;
