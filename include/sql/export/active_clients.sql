-- Active clients, in a stable order (one mapped export task each).
SELECT client_id
FROM clients
WHERE active
ORDER BY client_id;
