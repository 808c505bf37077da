-- Archive the rows of one block range [lo, hi) of {partition} still pending
-- and created before the cutoff; count them per client.
WITH archived AS (
    UPDATE {partition} AS e
    SET export_status = 'archived'
    WHERE e.ctid >= %(lo)s::tid
      AND e.ctid < %(hi)s::tid
      AND e.export_status = 'pending'
      AND e.created_at < %(cutoff)s
    RETURNING e.client_id
)
SELECT coalesce(client_id, '') AS client_id, count(*) AS n
FROM archived
GROUP BY 1
