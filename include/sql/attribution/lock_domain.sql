-- The current mapping of %(domain)s, locked until the answer is recorded.
SELECT d.client_id, d.source
FROM client_domains AS d
WHERE d.domain = %(domain)s
FOR UPDATE
