-- Archive the rows of one block range [lo, hi) of {partition} still pending
-- and created before the cutoff; count them per client. Rows already claimed
-- by an export hour (export_hour set) are left alone: that hour's export owns
-- them and will mark them exported when it publishes (health reports it if not).
WITH archived AS (
    UPDATE {partition} AS e
    SET export_status = 'archived'
    WHERE e.ctid >= %(lo)s::tid
      AND e.ctid < %(hi)s::tid
      AND e.export_status = 'pending'
      AND e.export_hour IS NULL
      AND e.created_at < %(cutoff)s
    RETURNING e.client_id
)
SELECT coalesce(client_id, '') AS client_id, count(*) AS n
FROM archived
GROUP BY 1
