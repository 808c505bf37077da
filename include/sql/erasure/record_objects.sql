-- Store the request's audit lists (backup objects rewritten, client objects to act on).
UPDATE gdpr_erasure_requests
SET objects_rewritten = %(objects)s,
    client_objects = %(client_objects)s
WHERE request_id = %(request_id)s
