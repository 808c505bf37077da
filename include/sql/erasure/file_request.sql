-- File a request from the trigger form, once per Airflow run: a retried filing task
-- gets back the request its first try filed. Returns the request's id.
WITH ins AS (
    INSERT INTO gdpr_erasure_requests
        (client_id, visitor_id, visitor_digest, requested_by, reference, whole_backup, filed_by_run_id)
    VALUES (%(client_id)s, %(visitor_id)s, %(visitor_digest)s, %(requested_by)s, %(reference)s,
            %(whole_backup)s, %(run_id)s)
    ON CONFLICT (filed_by_run_id) WHERE filed_by_run_id IS NOT NULL DO NOTHING
    RETURNING request_id
)
SELECT request_id FROM ins
UNION ALL
SELECT request_id FROM gdpr_erasure_requests
WHERE filed_by_run_id = %(run_id)s AND NOT EXISTS (SELECT 1 FROM ins)
