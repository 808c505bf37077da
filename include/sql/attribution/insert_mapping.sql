-- A new mapping answered by the service. Nothing happens when the domain was
-- mapped meanwhile (an operator's INSERT): the caller then decides again.
INSERT INTO client_domains (domain, client_id, source, resolved_at)
VALUES (%(domain)s, %(client_id)s, 'pixel_management', now())
ON CONFLICT (domain) DO NOTHING
RETURNING domain
