-- The service moved a domain it had mapped itself to another client. Only a
-- mapping still held by the old client and still from the service is changed.
UPDATE client_domains
SET client_id = %(new_client_id)s,
    resolved_at = now()
WHERE domain = %(domain)s
  AND client_id = %(old_client_id)s
  AND source = 'pixel_management'
RETURNING domain
