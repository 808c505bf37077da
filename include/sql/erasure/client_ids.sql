-- Every client id (the form's client must be one of them).
SELECT client_id
FROM clients
ORDER BY client_id
