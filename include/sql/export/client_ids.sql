-- Every client id (events_client_check suggests close ones for a mistyped id).
SELECT client_id
FROM clients
ORDER BY client_id;
