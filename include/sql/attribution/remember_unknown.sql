-- Negative cache: %(site)s was answered %(reason)s now; asked again after the TTL.
INSERT INTO attribution_negative_cache AS n (site, reason)
VALUES (%(site)s, %(reason)s)
ON CONFLICT (site) DO UPDATE
SET reason = EXCLUDED.reason,
    checked_at = now(),
    checks = n.checks + 1
