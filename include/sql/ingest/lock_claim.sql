-- Inside the load transaction: lock the registry row and re-check the claim.
-- A second loader of the same file waits here, then sees status 'loaded'.
SELECT status, claimed_by, attempts
FROM landing_files
WHERE file_id = %(file_id)s
FOR UPDATE
