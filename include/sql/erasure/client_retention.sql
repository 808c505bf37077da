-- A client's retention (days its exported rows stay in events_log).
SELECT retention_days
FROM clients
WHERE client_id = %(client_id)s
