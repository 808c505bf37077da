-- One client's export configuration.
SELECT client_id, active, export_bucket, export_prefix, export_conn_id
FROM clients
WHERE client_id = %(client_id)s;
