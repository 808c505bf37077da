-- %(client_id)s when it is a row of clients, locked against deletion until the
-- answer is recorded; no row when the client is unknown.
SELECT client_id FROM clients WHERE client_id = %(client_id)s FOR KEY SHARE
