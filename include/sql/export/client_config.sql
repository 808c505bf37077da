-- One client's export configuration: where its files go (bucket, prefix, connection)
-- and how they are written (format, compression, server-side encryption, part bounds;
-- migration 0090, export/formats.py).
SELECT client_id, active, export_bucket, export_prefix, export_conn_id,
       export_format, export_compression, export_sse, export_sse_kms_key_id,
       export_part_max_bytes, export_part_max_rows,
       privacy_level  -- a gdpr client gets no raw IP, even from rows stored before its switch
FROM clients
WHERE client_id = %(client_id)s;
