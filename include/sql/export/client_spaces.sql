-- Every client's export space, to check that no two overlap (tenant isolation).
SELECT client_id, export_bucket, export_prefix
FROM clients
ORDER BY client_id;
