-- events_client_check: the client's whole row (its configuration and export options).
SELECT client_id, name, privacy_level, active, export_bucket, export_prefix, export_conn_id,
       retention_days, created_at, updated_at,
       export_format, export_compression, export_sse, export_sse_kms_key_id,
       export_part_max_bytes, export_part_max_rows
FROM clients
WHERE client_id = %(client_id)s;
