-- Last day D such that billing has been computed for every day from the first
-- billed day up to D (no gap). Retention only deletes rows of days <= D.
WITH d AS (
    SELECT day, day - (row_number() OVER (ORDER BY day))::integer AS island
    FROM billing_runs
)
SELECT max(day) AS billed_through
FROM d
WHERE island = (SELECT island FROM d ORDER BY day LIMIT 1)
