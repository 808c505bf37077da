-- Every listed domain with its client and the client's privacy level, read once per file.
SELECT d.domain, d.client_id, c.privacy_level
FROM client_domains d
JOIN clients c ON c.client_id = d.client_id
