-- The service gave the same answer again for a mapping it gave before.
UPDATE client_domains
SET resolved_at = now()
WHERE domain = %(domain)s
  AND client_id = %(client_id)s
  AND source = 'pixel_management'
